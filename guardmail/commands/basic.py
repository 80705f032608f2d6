"""run, check-config, schema, explain."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guardmail.commands import (
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    load,
    load_read_only,
    tenant_settings,
)
from guardmail.config.settings import render_schema
from guardmail.config.tenants import load_tenants
from guardmail.core.aliases import Suspicion
from guardmail.core.impersonation import check as impersonates
from guardmail.core.item import describe_source, read_mail
from guardmail.core.rules import Action, Verdict, decide
from guardmail.daemon.tenant import build_rules
from guardmail.linker import explain_scores
from guardmail.pipeline_evidence import suspicion_fields


def register(sub: Subparsers) -> None:
    sub.add_parser("run", help="run the daemon in the foreground").set_defaults(
        handler=cmd_run,
        no_tenant="the daemon serves the main config's tenant and every tenant of tenants.d "
        "at once (a daemon of its own for one tenant runs with that tenant's config: -c FILE)",
    )
    sub.add_parser(
        "check-config",
        help="validate the configuration (exit 2 on errors); with --tenant, that tenant's file too",
    ).set_defaults(handler=cmd_check_config)
    sub.add_parser("schema", help="print the JSON Schema of the configuration").set_defaults(
        handler=cmd_schema, no_tenant="the schema of the configuration is the same for every tenant"
    )
    ex = sub.add_parser("explain", help="show what guardmail would do with a message file")
    ex.add_argument("message", type=Path)
    ex.add_argument("--json", action="store_true", help="one JSON object")
    ex.set_defaults(handler=cmd_explain)


def cmd_run(args: argparse.Namespace) -> int:
    from guardmail.daemon.supervisor import run

    return run(Path(args.config))


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(render_schema())
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    """Check the main config, its offender files, and tenants.d as ``run`` would read them."""
    loaded = load(args)
    s = loaded.settings
    tenants = ""
    if s.sources.smtp_filter is not None:
        # ConfigError (exit 2, FILE:LINE:COL) for a tenant file `run` would refuse.
        found = load_tenants(s.sources.smtp_filter.tenants_dir, reserved={s.tenant})
        tenants = f", {len(found.tenants)} tenants in {found.directory}"
    tenant = tenant_settings(args, loaded)  # the one --tenant names, else the main one
    print(
        f"{loaded.path}: OK ({len(s.offenders)} offenders, "
        f"{len(s.sources.maildir)} Maildir sources{tenants}, state in {s.state_dir})"
    )
    if tenant is not s:
        print(f"tenant {tenant.tenant}: OK ({len(tenant.offenders)} offenders)")
    return EXIT_OK


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    """The verdict for ``explain --json``: the primary match's fields, then every match."""
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
                "found_in": describe_source(m.header),
                "looks_like": m.looks_like,
            }
            for m in verdict.matches
        ],
    }


def cmd_explain(args: argparse.Namespace) -> int:
    loaded = load_read_only(args)
    try:
        raw = args.message.read_bytes()
    except OSError as exc:
        print(f"guardmail: cannot read {args.message}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    settings = tenant_settings(args, loaded)
    now = datetime.now(UTC)
    reading = read_mail(raw)
    verdict = decide(reading.identities, build_rules(settings), now=now)
    own = settings.impersonation.own_names(settings.evidence.authserv_id)
    if verdict.action is Action.PASS and own is not None:
        found = impersonates(raw, reading.identities, own)
        if found is not None:
            verdict = Verdict(action=Action.QUARANTINE, decided_at=now, impersonation=found)
    data = _verdict_json(verdict)
    data["impersonation"] = (
        {"kind": verdict.impersonation.kind, "why": verdict.impersonation.why}
        if verdict.impersonation is not None
        else None
    )
    data["parse_errors"] = list(reading.parse_errors)
    aliases, note = explain_scores(settings, raw, reading.identities, now=now)
    threshold = settings.aliases.review_threshold
    held = verdict.action is Action.PASS and settings.aliases.enabled
    held = held and any(s.likelihood >= threshold for s in aliases)
    data["aliases"] = [suspicion_fields(s) for s in aliases]
    data["review_threshold"] = threshold
    data["held_for_review"] = held
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
        return EXIT_OK
    print(f"action:   {data['action']}")
    if verdict.impersonation is not None:
        found = verdict.impersonation
        print(f"why:      impersonation ({found.kind}): {found.why}")
    elif verdict.primary is None:
        print("why:      no offender rule matches any sender identity")
    for m in verdict.matches:
        print(f"offender: {m.offender} ({m.action})")
        print(f"  rule:   {m.rule}")
        print(f"  header: {m.header}: {m.value}")
        if describe_source(m.header) != m.header:
            print(f"  found:  {describe_source(m.header)}")
        print(f"  as:     {m.normalized}")
        if m.looks_like:
            print(f"  {m.looks_like}")
    print("identities read:")
    for ident in reading.identities:
        name = f'"{ident.display_name}" ' if ident.display_name else ""
        where = describe_source(ident.source)
        note = f"  ({where})" if where != ident.source else ""
        print(f"  {ident.source}: {name}<{ident.address or ''}>{note}")
    for error in data["parse_errors"]:
        print(f"unreadable: {error}")
    _print_aliases(aliases, threshold, held, note)
    return EXIT_OK


def _print_aliases(aliases: list[Suspicion], threshold: float, held: bool, note: str) -> None:
    if note:
        print(f"aliases:  {note}")
    if not aliases:
        print("aliases:  the sender resembles no offender")
        return
    if held:
        print(
            f"aliases:  held for review (a Maildir source's Review folder; threshold {threshold})"
        )
    for s in aliases:
        print(f"alias of: {s.offender}: likelihood {s.likelihood:.2f} (threshold {threshold})")
        for x in s.signals:
            print(f"  {x.signal:<15} {x.weight:+5.1f}  {x.why}")
