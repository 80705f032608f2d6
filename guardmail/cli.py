"""The ``guardmail`` command.

Exit codes: 0 success; 1 a check failed (``evidence verify`` found a problem) or an operation
failed at run time; 2 bad input: unreadable config or file, invalid arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guardmail import __version__
from guardmail.core.item import mail_item
from guardmail.core.rules import Verdict, decide
from guardmail.errors import ConfigError, GuardmailError
from guardmail.settings import LoadedConfig, load_config, render_schema
from guardmail.tenant import build_rules, open_tenant
from guardmail.vault import journal
from guardmail.vault.verify import verify_vault

DEFAULT_CONFIG = "/etc/guardmail/guardmail.yaml"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="guardmail", description=__doc__.splitlines()[0])
    p.add_argument(
        "-c",
        "--config",
        default=os.environ.get("GUARDMAIL_CONFIG", DEFAULT_CONFIG),
        help=f"configuration file (default: $GUARDMAIL_CONFIG or {DEFAULT_CONFIG})",
    )
    p.add_argument("--version", action="version", version=f"guardmail {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the daemon in the foreground")
    sub.add_parser("check-config", help="validate the configuration (exit 2 on errors)")
    sub.add_parser("schema", help="print the JSON Schema of the configuration")
    ex = sub.add_parser("explain", help="show what guardmail would do with a message file")
    ex.add_argument("message", type=Path)
    ex.add_argument("--json", action="store_true", help="one JSON object")
    ev = sub.add_parser("evidence", help="the evidence vault").add_subparsers(
        dest="evidence_command", required=True
    )
    ls = ev.add_parser("list", help="archived items")
    ls.add_argument("--json", action="store_true", help="JSON lines")
    show = ev.add_parser("show", help="an archived item's raw bytes, unaltered, to stdout")
    show.add_argument("seq", type=int)
    ev.add_parser("verify", help="check blobs and journal (exit 1 naming what is off)")
    return p


def _load(path: str) -> LoadedConfig:
    return load_config(Path(path))


def cmd_check_config(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    s = loaded.settings
    print(
        f"{loaded.path}: OK ({len(s.offenders)} offenders, "
        f"{len(s.sources.maildir)} Maildir sources, state in {s.state_dir})"
    )
    return EXIT_OK


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    p = verdict.primary
    return {
        "action": str(verdict.action),
        "offender": p.offender if p else None,
        "rule": p.rule if p else None,
        "header": p.header if p else None,
        "value": p.value if p else None,
        "normalized": p.normalized if p else None,
        "matches": [
            {
                "offender": m.offender,
                "action": str(m.action),
                "rule": m.rule,
                "header": m.header,
                "value": m.value,
                "normalized": m.normalized,
            }
            for m in verdict.matches
        ],
    }


def cmd_explain(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    try:
        raw = args.message.read_bytes()
    except OSError as exc:
        print(f"guardmail: cannot read {args.message}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    now = datetime.now(UTC)
    item = mail_item(raw, tenant="", account="", source_ref=str(args.message), received_at=now)
    verdict = decide(item.identities, build_rules(loaded.settings), now=now)
    data = _verdict_json(verdict)
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
        return EXIT_OK
    print(f"action:   {data['action']}")
    if verdict.primary is None:
        print("why:      no offender rule matches any sender identity")
    for m in verdict.matches:
        print(f"offender: {m.offender} ({m.action})")
        print(f"  rule:   {m.rule}")
        print(f"  header: {m.header}: {m.value}")
        print(f"  as:     {m.normalized}")
    print("identities read:")
    for ident in item.identities:
        name = f'"{ident.display_name}" ' if ident.display_name else ""
        print(f"  {ident.source}: {name}<{ident.address or ''}>")
    return EXIT_OK


def cmd_evidence(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            from guardmail.daemon import run

            return run(Path(args.config))
        if args.command == "check-config":
            return cmd_check_config(args)
        if args.command == "schema":
            sys.stdout.write(render_schema())
            return EXIT_OK
        if args.command == "explain":
            return cmd_explain(args)
        return cmd_evidence(args)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EXIT_USAGE
    except GuardmailError as exc:
        print(f"guardmail: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
