"""evidence verify-dkim SEQ: an archived item's signatures verified again, offline, from the key
records kept when it arrived (guardmail.vault.receipts).

Exit 0 when every signature that passed at receipt still passes from its snapshot; 1 when one
does not, when a snapshot is missing, or when the item was never checked; 2 for a wrong SEQ.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from guardmail.commands import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    load_read_only,
    tenant_settings,
)
from guardmail.daemon.tenant import open_tenant
from guardmail.errors import StateError
from guardmail.vault.receipt_records import Stored, recheck_stored, stored
from guardmail.vault.receipts import LATE_NOTE


def register(ev: Any) -> None:
    """Add ``verify-dkim`` to the ``evidence`` subcommands."""
    p = ev.add_parser(
        "verify-dkim",
        help="verify an archived item's DKIM/ARC signatures again, offline, from the key "
        "records kept when it arrived",
    )
    p.add_argument("seq", type=int)
    p.set_defaults(handler=cmd_verify_dkim)


def cmd_verify_dkim(args: argparse.Namespace) -> int:
    loaded = load_read_only(args)
    tenant = open_tenant(tenant_settings(args, loaded))
    try:
        row = tenant.vault.row(args.seq)
        if row is None or row.kind != "archived" or row.sha256 is None:
            print(f"guardmail: no archived item with seq {args.seq}", file=sys.stderr)
            return EXIT_USAGE
        try:
            raw = tenant.vault.blobs.get(row.sha256)
        except (OSError, StateError) as exc:
            print(f"guardmail: item {args.seq}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        kept = stored(tenant.storage, tenant.name, args.seq)
    finally:
        tenant.close()
    lines, ok = report(args.seq, raw, kept)
    print("\n".join(lines))
    return EXIT_OK if ok else EXIT_FAILED


def report(seq: int, raw: bytes, kept: Stored) -> tuple[list[str], bool]:
    """The lines ``verify-dkim`` prints, and whether every signature that passed at receipt
    passes again from its snapshot."""
    if kept.check is None:
        return [f"item {seq}: not checked at receipt (no DKIM result kept)"], False
    c = kept.check
    lines = [f"item {seq}: checked {c.checked_at} through {c.resolver}"]
    if c.note:
        lines.append(f"  {c.note}")
    now = recheck_stored(raw, kept)
    # A check queued again after a crash ran later than receipt (keys may have rotated since):
    # its results are labelled by when they were taken, never as "at receipt".
    then_label = "when checked" if c.note.startswith(LATE_NOTE) else "at receipt"
    ok = True
    if len(now) != len(kept.results):
        lines.append(f"  {len(kept.results)} signatures kept, {len(now)} found now")
        ok = False
    for then, again in zip(kept.results, now, strict=False):
        key = kept.keys.get(then.key_sha256 or "")
        where = (
            f"key {key.record_sha256[:16]} fetched {key.fetched_at} from {key.resolver}"
            if key is not None
            else "no key snapshot"
        )
        lines.append(
            f"  {then.kind} d={then.domain} s={then.selector} {then.algorithm}: {then_label} "
            f"{then.result}{f' ({then.reason})' if then.reason else ''}; from the snapshot "
            f"{again.result}{f' ({again.reason})' if again.reason else ''} [{where}]"
        )
        if then.result == "pass" and again.result != "pass":
            ok = False
    if not kept.results:
        lines.append("  no DKIM signature")
    lines.append(f"  ARC: {c.arc_result} ({c.arc_reason})")
    if c.authserv_id:
        text = c.auth_results or "none in the message"
        lines.append(f"  Authentication-Results of {c.authserv_id}: {text}")
    return lines, ok
