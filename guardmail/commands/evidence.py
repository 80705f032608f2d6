"""evidence list, show, verify: reading the tenant's vault."""

from __future__ import annotations

import argparse
import json
import sys

from guardmail.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Subparsers, load
from guardmail.tenant import open_tenant
from guardmail.vault import journal
from guardmail.vault.verify import verify_vault


def register(sub: Subparsers) -> None:
    ev = sub.add_parser("evidence", help="the evidence vault").add_subparsers(
        dest="evidence_command", required=True
    )
    ls = ev.add_parser("list", help="archived items")
    ls.add_argument("--json", action="store_true", help="JSON lines")
    ls.set_defaults(handler=cmd_evidence)
    show = ev.add_parser("show", help="an archived item's raw bytes, unaltered, to stdout")
    show.add_argument("seq", type=int)
    show.set_defaults(handler=cmd_evidence)
    ev.add_parser(
        "verify", help="check blobs and journal (exit 1 naming what is off)"
    ).set_defaults(handler=cmd_evidence)


def cmd_evidence(args: argparse.Namespace) -> int:
    loaded = load(args)
    tenant = open_tenant(loaded.settings)
    try:
        vault = tenant.vault
        if args.evidence_command == "list":
            actions = {}
            for row in vault.rows(kind="action"):
                body = journal.entry(row)
                actions[body.get("archived_seq")] = body.get("done")
            for row in vault.rows(kind="archived"):
                body = journal.entry(row)
                rec = {
                    "seq": row.seq,
                    "time": body.get("time"),
                    "sha256": row.sha256,
                    "channel": body.get("channel"),
                    "account": body.get("account"),
                    "offender": body.get("offender"),
                    "action": body.get("action"),
                    "subject": body.get("subject"),
                    "done": actions.get(row.seq),
                }
                if args.json:
                    print(json.dumps(rec, ensure_ascii=False))
                else:
                    print(
                        f"{rec['seq']:>6}  {rec['time']}  {rec['channel']:<4}  "
                        f"{rec['action']:<10}  {rec['offender']}  {(row.sha256 or '')[:16]}  "
                        f"{rec['subject']!r}  ({rec['done'] or 'no action recorded'})"
                    )
            return EXIT_OK
        if args.evidence_command == "show":
            found = vault.row(args.seq)
            if found is None or found.kind != "archived" or found.sha256 is None:
                print(f"guardmail: no archived item with seq {args.seq}", file=sys.stderr)
                return EXIT_USAGE
            sys.stdout.buffer.write(vault.blobs.get(found.sha256))
            sys.stdout.buffer.flush()
            return EXIT_OK
        problems = verify_vault(vault)
        for problem in problems:
            print(f"guardmail: vault {tenant.name}: {problem}", file=sys.stderr)
        if problems:
            return EXIT_FAILED
        print(f"vault {tenant.name}: {len(vault.rows())} entries intact")
        return EXIT_OK
    finally:
        tenant.close()
