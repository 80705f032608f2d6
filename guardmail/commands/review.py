"""review: the items held as suspected aliases of an offender; confirm or dismiss each.

  guardmail review list [--all] [--json]   the held items (--all: decided ones too)
  guardmail review show ID [--body] [--json]  signals, scores and headers (the body on request)
  guardmail review confirm ID [--as NAME]  the sender becomes an alias of the offender
  guardmail review dismiss ID              the sender is not; the message goes back

Exit codes: 0 done; 1 the vault or the offenders file could not take it; 2 bad input (no such
held item, decided already, unknown offender, config error).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from guardmail.commands import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    load,
    tenant_settings,
)
from guardmail.control.review import BadReview, Held, confirm, dismiss, find_held, held_items
from guardmail.core.headers import header_section
from guardmail.daemon.tenant import open_tenant
from guardmail.errors import VaultUnavailable
from guardmail.vault.custody import local_user, record_view

NO_TENANT = (
    "confirming adds the sender to the main config's offenders.d/reported.yaml; for a tenant "
    "of tenants.d, add the alias to its file and dismiss or leave the item"
)


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "review",
        help="items held as suspected aliases of an offender: list, show, confirm, dismiss",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rsub = p.add_subparsers(dest="review_command", required=True)
    ls = rsub.add_parser("list", help="the items held for review")
    ls.add_argument("--all", action="store_true", help="decided items too")
    ls.add_argument("--json", action="store_true", help="one JSON array")
    ls.set_defaults(handler=cmd_list)
    show = rsub.add_parser("show", help="one held item: signals, scores, headers")
    show.add_argument("id", type=int)
    show.add_argument("--body", action="store_true", help="print the whole message")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(handler=cmd_show)
    conf = rsub.add_parser("confirm", help="the sender is an alias of the offender")
    conf.add_argument("id", type=int)
    conf.add_argument("--as", dest="as_offender", metavar="OFFENDER", help="another offender")
    conf.add_argument("--json", action="store_true", help="one JSON object")
    conf.set_defaults(handler=cmd_confirm, no_tenant=NO_TENANT)
    dis = rsub.add_parser("dismiss", help="the sender is not an alias; the message goes back")
    dis.add_argument("id", type=int)
    dis.add_argument("--json", action="store_true", help="one JSON object")
    dis.set_defaults(handler=cmd_dismiss)


def _line(h: Held) -> str:
    return (
        f"{h.seq:>6}  {h.state:<9}  {h.likelihood:5.2f}  {h.offender}  <- {h.sender}  "
        f"{h.subject[:60]!r}"
    )


def cmd_list(args: argparse.Namespace) -> int:
    tenant = open_tenant(tenant_settings(args, load(args)))
    try:
        items = [h for h in held_items(tenant) if args.all or h.state == "held"]
    finally:
        tenant.close()
    if args.json:
        print(json.dumps([h.to_json() for h in items], ensure_ascii=False))
        return EXIT_OK
    if not items:
        print("no items held for review")
    for h in items:
        print(_line(h))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    tenant = open_tenant(tenant_settings(args, load(args)))
    try:
        held = find_held(tenant, args.id)
        raw = tenant.vault.blobs.get(held.sha256)
        row = tenant.vault.row(held.seq)
        if row is not None:  # journaled before it is shown (guardmail.vault.custody)
            record_view(tenant.vault, row, command="review show", by=local_user(), now=_now())
    except BadReview as exc:
        print(f"guardmail: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VaultUnavailable as exc:
        print(f"guardmail: nothing shown: the view cannot be journaled: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        tenant.close()
    text = (raw if args.body else header_section(raw)).decode("utf-8", "replace")
    if args.json:
        data = held.to_json() | ({"message" if args.body else "headers": text})
        print(json.dumps(data, ensure_ascii=False))
        return EXIT_OK
    print(_line(held))
    print(f"suspected alias of {held.offender}: likelihood {held.likelihood:.2f}")
    for s in held.signals:
        print(f"  {s.get('signal')!s:<15} {float(s.get('weight', 0)):+5.1f}  {s.get('why')}")
    print(f"where:  {held.where}")
    print(f"sha256: {held.sha256}")
    print("headers:" if not args.body else "message:")
    print(text)
    return EXIT_OK


def cmd_confirm(args: argparse.Namespace) -> int:
    config = load(args)
    tenant = open_tenant(config.settings)
    try:
        done = confirm(
            config, tenant, args.id, as_offender=args.as_offender, now=_now(), by=local_user()
        )
    except BadReview as exc:
        print(f"guardmail: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        tenant.close()
    if args.json:
        print(json.dumps(done.to_json(), ensure_ascii=False))
    else:
        print(f"confirmed: {done.sender} is {done.offender}")
        print(f"rule:      {done.rule_added or 'already covered by the rules'}")
        print(f"item:      {done.done}")
    return EXIT_OK


def cmd_dismiss(args: argparse.Namespace) -> int:
    settings = tenant_settings(args, load(args))
    tenant = open_tenant(settings)
    try:
        done = dismiss(settings, tenant, args.id, now=_now(), by=local_user())
    except BadReview as exc:
        print(f"guardmail: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        tenant.close()
    if args.json:
        print(json.dumps(done.to_json(), ensure_ascii=False))
    else:
        print(f"dismissed: {done.sender} is not {done.offender}")
        print(f"item:      {done.done}")
    return EXIT_OK


def _now() -> datetime:
    return datetime.now(UTC)
