"""report: keep one item from standard input as evidence and block its sender from now on.

Any client that can pipe a message (mutt, neomutt, aerc, Claws Mail) can run
``guardmail report < message``. The running daemon does the work when its control socket
answers; otherwise the command does the same work in-process, through the same pipeline.
Either way it prints the vault entry, the SHA-256, the offender and the rule added; its last
line is one short summary for a mail client's status line.

Exit codes:
  0  archived (or the same bytes were archived by an earlier report); the sender is blocked
  1  not done at run time: the vault cannot take the item, the daemon failed, or the item was
     archived but the offenders file could not be written, or it was written but the config
     does not load it (its offenders_files leave it out), so nothing blocks the sender (the
     message says which)
  2  bad input: config error, empty item, no sender to block, unknown or taken offender name,
     invalid arguments
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import sys
from datetime import UTC, datetime

from guardmail.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Subparsers, load
from guardmail.config.settings import LoadedConfig
from guardmail.control.client import NoDaemon, call, report_message
from guardmail.control.offenders import BadReport
from guardmail.control.protocol import USAGE_KINDS
from guardmail.control.report import MAX_ITEM_BYTES, Reported, ReportRequest, file_report
from guardmail.core.item import Channel
from guardmail.core.rules import Action
from guardmail.daemon.tenant import open_tenant
from guardmail.errors import GuardmailError

# Reports add senders to offenders.d/reported.yaml, which only the main config loads; a tenant's
# offenders live in its own tenants.d file, which guardmail never rewrites.
NO_TENANT = (
    "reports archive into the main config's vault and add the sender to its "
    "offenders.d/reported.yaml; for a tenant of tenants.d, add the offender to its file"
)


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "report",
        help="archive an item from standard input as evidence and block its sender",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    who = p.add_mutually_exclusive_group()
    who.add_argument("--offender", metavar="NAME", help="add the sender to this offender")
    who.add_argument("--new-offender", metavar="NAME", help="make the sender a new offender")
    p.add_argument("--channel", choices=[c.value for c in Channel], default=Channel.MAIL.value)
    p.add_argument(
        "--action",
        choices=[Action.QUARANTINE.value, Action.BLOCK.value],
        default=Action.QUARANTINE.value,
        help="what the daemon does with a new offender's items (default: quarantine)",
    )
    p.add_argument("--client", default="cli", help="the client reporting (kept as evidence)")
    p.add_argument("--account", default="", help="the account the item arrived in")
    p.add_argument("--json", action="store_true", help="one JSON object on standard output")
    p.add_argument(
        "--no-daemon", action="store_true", help="work in-process even when the daemon runs"
    )
    p.set_defaults(handler=cmd_report, no_tenant=NO_TENANT)


def local_user() -> tuple[str, int]:
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name, uid
    except KeyError:
        return str(uid), uid


def request_from(args: argparse.Namespace, raw: bytes) -> ReportRequest:
    user, uid = local_user()
    return ReportRequest(
        raw=raw,
        channel=Channel(args.channel),
        offender=args.offender,
        new_offender=args.new_offender,
        action=Action(args.action),
        client=args.client,
        account=args.account,
        user=user,
        uid=uid,
    )


def report_in_process(config: LoadedConfig, request: ReportRequest) -> Reported:
    tenant = open_tenant(config.settings)
    try:
        return asyncio.run(
            file_report(request, config=config, tenant=tenant, now=datetime.now(UTC))
        )
    finally:
        tenant.close()


class DaemonRefused(GuardmailError):
    """The daemon answered a report with an error (``kind`` as in guardmail.control.server)."""

    def __init__(self, kind: str, error: str) -> None:
        super().__init__(error)
        self.kind = kind


def report(config: LoadedConfig, request: ReportRequest, *, in_process: bool) -> Reported:
    """Hand ``request`` to the daemon, or do it in-process when none answers (or asked to).

    Raises BadReport, DaemonRefused, or GuardmailError (PeerError, VaultUnavailable ...).
    """
    if not in_process:
        try:
            answer = call(config.settings.state_dir, report_message(request))
        except NoDaemon:
            pass
        else:
            if answer["ok"]:
                return Reported.from_json(answer["result"])
            raise DaemonRefused(str(answer.get("kind")), str(answer.get("error")))
    return report_in_process(config, request)


def print_reported(result: Reported, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json(), sort_keys=True))
    else:
        again = "already archived" if result.duplicate else "archived"
        print(f"{again}: vault entry {result.seq}, {result.size} bytes")
        print(f"sha256: {result.sha256}")
        print(f"offender: {result.offender}")
        if result.rule_added:
            print(f"rule added: {result.rule_added} in {result.offenders_file}")
        else:
            print(f"rule added: none (already covered by offender {result.covered_by!r})")
    if result.hint:
        sys.stdout.flush()  # the sentence below is the last line a mail client shows
        print(
            f"guardmail: archived, but NOT blocked: your config does not load "
            f"{result.offenders_file}, so the daemon will not block this sender; {result.hint}",
            file=sys.stderr,
        )
        return
    if not as_json:
        # The last line, short and plain: mail clients show it in their status line.
        print(f"guardmail: reported as vault entry {result.seq}, offender {result.offender}")


def cmd_report(args: argparse.Namespace) -> int:
    config = load(args)
    raw = sys.stdin.buffer.read(MAX_ITEM_BYTES + 1)
    try:
        result = report(config, request_from(args, raw), in_process=args.no_daemon)
    except BadReport as exc:
        print(f"guardmail: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DaemonRefused as exc:
        print(f"guardmail: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.kind in USAGE_KINDS else EXIT_FAILED
    print_reported(result, as_json=args.json)
    return EXIT_OK if result.file_loaded else EXIT_FAILED
