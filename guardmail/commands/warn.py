"""warn: the one cease-contact warning (dry run, send with confirmation, status, mark/retry)."""

from __future__ import annotations

import argparse
import sys

from guardmail.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Subparsers, load, tenant_settings
from guardmail.daemon.tenant import open_tenant
from guardmail.warner import WarningRefused, describe


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "warn",
        help="send the one warning to stop contact (at most once per offender, ever)",
        description="Send one offender the cease-contact warning from the config, at most once.",
    )
    p.add_argument("offender", nargs="?", help="offender name, as in the config")
    p.add_argument("--status", action="store_true", help="each offender's warning state")
    p.add_argument("--dry-run", action="store_true", help="print the message; send nothing")
    p.add_argument("--yes", action="store_true", help="send without asking")
    p.add_argument("--to", metavar="ADDRESS", help="one of the offender's concrete addresses")
    p.add_argument(
        "--retry",
        action="store_true",
        help="send again after a failed or unknown attempt (check your Sent folder first)",
    )
    p.add_argument(
        "--mark-sent",
        action="store_true",
        help="record that the warning did go out (after an unknown outcome, or sent by hand)",
    )
    p.add_argument("--note", default="confirmed by the user", help="note for --mark-sent")
    p.set_defaults(handler=cmd_warn)


def cmd_warn(args: argparse.Namespace) -> int:
    loaded = load(args)
    if not args.status and not args.offender:
        print("guardmail warn: name an OFFENDER, or use --status", file=sys.stderr)
        return EXIT_USAGE
    settings = tenant_settings(args, loaded)
    tenant = open_tenant(settings)
    warner = tenant.warner
    try:
        if args.status:
            for offender in settings.offenders:
                said = describe(warner.state(offender.name))
                print(f"{offender.name}: {said} [id {warner.offender_id(offender.name)}]")
            return EXIT_OK
        if args.mark_sent:
            row = warner.mark_sent(args.offender, args.note)
            print(f"{args.offender}: {describe(row)}")
            return EXIT_OK
        plan = warner.plan(args.offender, to=args.to)
        if args.dry_run:
            print(
                f"# would send to {plan.message.recipient} (Date and Message-ID are set when "
                "sent); nothing was sent",
                file=sys.stderr,
            )
            sys.stdout.buffer.write(plan.message.raw)
            sys.stdout.buffer.flush()
            return EXIT_OK
        state = warner.state(plan.offender)
        if state is not None and not args.retry:
            print(f"guardmail: warning to {plan.offender!r}: {describe(state)}", file=sys.stderr)
            return EXIT_FAILED
        print(f"To: {plan.message.recipient}\n", file=sys.stderr)
        print(plan.message.raw.decode("utf-8", "replace"), file=sys.stderr)
        if not args.yes:
            if not sys.stdin.isatty():
                print("guardmail warn: not a terminal; add --yes to send", file=sys.stderr)
                return EXIT_USAGE
            answer = input(f"Send this warning to {plan.message.recipient}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("not sent", file=sys.stderr)
                return EXIT_FAILED
        row = warner.send(plan, retry=args.retry)
        print(f"{plan.offender}: {describe(row)}")
        return EXIT_OK
    except WarningRefused as exc:
        print(f"guardmail: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        tenant.close()
