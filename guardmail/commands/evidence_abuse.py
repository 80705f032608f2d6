"""evidence abuse-report: an RFC 5965 report of the offender's mail for their provider's abuse desk.

Written to a file (never overwriting); with ``--send`` also submitted through ``warning.smtp`` and
recorded in the vault with its bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guardmail import __version__
from guardmail.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load, tenant_settings
from guardmail.config.settings import Settings
from guardmail.config.warning import SmtpConfig
from guardmail.daemon.tenant import open_tenant
from guardmail.export.arf import AbuseReport, Original, build_report, original, valid_address
from guardmail.export.evidence import Criteria
from guardmail.export.selection import journaled_offenders, select, unknown_offenders
from guardmail.storage.base import JournalRow
from guardmail.vault.blobs import write_durably

DEFAULT_ATTACH = 20


def register(ev: Any) -> None:
    """Add ``abuse-report`` to the ``evidence`` subcommands."""
    ab = ev.add_parser(
        "abuse-report", help="write an RFC 5965 abuse report for the offender's mail provider"
    )
    ab.add_argument("--offender", required=True)
    ab.add_argument("--to", help="default: abuse@ the sending domain (RFC 2142)")
    ab.add_argument(
        "--from",
        dest="sender",
        help="the reporting address (default: the address the offender wrote to)",
    )
    ab.add_argument(
        "--domain", help="report mail from this sending domain (default: the one most used)"
    )
    ab.add_argument(
        "--attach",
        type=int,
        default=DEFAULT_ATTACH,
        help=f"attach at most this many messages, earliest first (default {DEFAULT_ATTACH})",
    )
    ab.add_argument("--out", type=Path, required=True, help="the report file to write (.eml)")
    ab.add_argument(
        "--send",
        action="store_true",
        help="also send it through the submission server of `warning.smtp` (recorded in the vault)",
    )
    ab.set_defaults(handler=cmd_abuse_report)


def _usage(message: str) -> int:
    print(f"guardmail: {message}", file=sys.stderr)
    return EXIT_USAGE


def unknown_offender(requested: list[str], configured: list[str], rows: list[JournalRow]) -> str:
    """An error message if a requested offender is neither configured nor in the journal."""
    known = list(dict.fromkeys([*configured, *journaled_offenders(rows)]))
    unknown = unknown_offenders(requested, known)
    if not unknown:
        return ""
    return f"unknown offender {unknown[0]!r} (known: {', '.join(known) or 'none'})"


def cmd_abuse_report(args: argparse.Namespace) -> int:
    from guardmail.export.bundle import read_blob

    if args.attach < 1:
        return _usage(f"--attach must be at least 1, not {args.attach}")
    for option, value in (("--to", args.to), ("--from", args.sender)):
        if value is not None and not valid_address(value):
            return _usage(f"{option} {value!r} is not a plain address such as abuse@example.net")
    if args.out.exists() or args.out.is_symlink():
        return _usage(f"{args.out} already exists; reports never overwrite")
    loaded = load(args)
    settings = tenant_settings(args, loaded)
    smtp = settings.warning.smtp if settings.warning else None
    if args.send and smtp is None:
        return _usage(
            "--send needs a submission server: a `warning:` section with `smtp:` "
            "(or write the report with --out and send it from your mail program)"
        )
    tenant = open_tenant(settings)
    try:
        rows = tenant.vault.rows()
        problem = unknown_offender([args.offender], [o.name for o in settings.offenders], rows)
        if problem:
            return _usage(problem)
        evidence = select(rows, tenant=tenant.name, criteria=Criteria(offenders=(args.offender,)))
        origs = [
            original(item, read_blob(tenant.vault, item.sha256, f"item seq {item.seq}"))
            for item in evidence.items
            # the offender's own mail only: not the person's to them (guardmail/kept.py)
            if item.channel == "mail" and item.direction != "outgoing" and not item.context_of
        ]
    finally:
        tenant.close()
    if not origs:
        return _usage(f"no archived mail from offender {args.offender!r}")
    by_domain: dict[str, list[Original]] = {}
    for o in origs:
        by_domain.setdefault(o.domain, []).append(o)
    domain = (args.domain or "").lower() or max(by_domain, key=lambda d: len(by_domain[d]))
    chosen = by_domain.get(domain)
    if not chosen:
        return _usage(f"no archived mail from {args.offender!r} was sent from {domain!r}")
    to = args.to or (f"abuse@{domain}" if domain else "")
    sender = args.sender or next((o.recipient for o in chosen if o.recipient), "")
    if not valid_address(to):
        return _usage("cannot tell the sending domain: give --to")
    if not valid_address(sender):
        return _usage("cannot tell the address the offender wrote to: give --from")
    report = build_report(
        chosen,
        offender=args.offender,
        to=to,
        sender=sender,
        now=datetime.now(UTC),
        version=__version__,
        attach=args.attach,
    )
    write_durably(args.out, report.data)
    print(f"wrote {args.out} ({len(report.data)} bytes)" + ("" if args.send else ", not sent"))
    print(f"  To:       {report.to}")
    print(f"  From:     {report.sender}")
    print(f"  Subject:  {report.subject}")
    print(f"  messages: {report.listed} listed, {report.attached} attached unaltered")
    others = {d: len(v) for d, v in by_domain.items() if d != domain}
    for d, n in sorted(others.items()):
        print(f"  also:     {n} messages from {d or '(no domain)'}: use --domain {d}")
    if args.send and smtp is not None:
        return _send_report(args, settings, smtp, report)
    return EXIT_OK


def _send_report(
    args: argparse.Namespace, settings: Settings, smtp: SmtpConfig, report: AbuseReport
) -> int:
    """Submit the report as written, then journal it (its bytes in the vault)."""
    from guardmail.channels.smtp.submit import submit
    from guardmail.errors import SubmitError

    sha = hashlib.sha256(report.data).hexdigest()
    tenant = open_tenant(settings)
    try:
        tenant.vault.blobs.put(report.data, sha)
        try:
            reply = submit(smtp, sender=report.sender, recipient=report.to, raw=report.data)
        except SubmitError as exc:
            outcome = "not sent" if exc.certain else "outcome unknown (check your Sent folder)"
            print(f"guardmail: abuse report {outcome}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        tenant.vault.record(
            "abuse_report",
            {
                "offender": args.offender,
                "to": report.to,
                "from": report.sender,
                "subject": report.subject,
                "server_reply": reply,
            },
            now=datetime.now(UTC),
            sha256=sha,
        )
    finally:
        tenant.close()
    print(f"sent to {report.to} via {smtp.host}: {reply}")
    return EXIT_OK
