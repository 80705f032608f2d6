"""status: what the running daemon reports (sources, counts, reloads) and the vault's health."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from guardmail.commands import EXIT_FAILED, EXIT_OK, Subparsers, load_read_only, tenant_settings
from guardmail.daemon.observe import STATUS_FILE
from guardmail.daemon.tenant import open_tenant
from guardmail.vault.verify import verify_vault

# The daemon rewrites status.json every 5 s; older than this, it is not running (or hung).
STALE_SECONDS = 30.0


def register(sub: Subparsers) -> None:
    p = sub.add_parser("status", help="the daemon's sources, counts and the vault's health")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--verify", action="store_true", help="also re-hash every blob (slow)")
    p.set_defaults(handler=cmd_status)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_status(args: argparse.Namespace) -> int:
    loaded = load_read_only(args)
    state_dir = loaded.settings.state_dir
    report: dict[str, Any] = {"running": False}
    try:
        published = json.loads((state_dir / STATUS_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        published = None
    if isinstance(published, dict):
        updated = datetime.fromisoformat(str(published.get("updated_at")))
        age = (datetime.now(UTC) - updated).total_seconds()
        report.update(published)
        report["running"] = _alive(int(published.get("pid", 0))) and age < STALE_SECONDS
        report["age_seconds"] = round(age, 1)
    tenant = open_tenant(tenant_settings(args, loaded))
    try:
        problems = verify_vault(tenant.vault, blobs=args.verify)
        entries = sum(1 for _ in tenant.vault.iter_rows())
        stamp = tenant.vault.last_timestamp()
    finally:
        tenant.close()
    report["vault"] = {
        "tenant": tenant.name,
        "entries": entries,
        "intact": not problems,
        "problems": [str(p) for p in problems],
        "blobs_checked": bool(args.verify),
        "last_timestamp": (
            {"tree_size": stamp.tree_size, "gen_time": stamp.gen_time} if stamp else None
        ),
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        _print(report)
    return EXIT_OK if report["running"] and not problems else EXIT_FAILED


def _print(report: dict[str, Any]) -> None:
    if report["running"]:
        print(f"daemon: running (pid {report['pid']}, since {report['started_at']})")
    elif "pid" in report:
        print(f"daemon: NOT running (last status {report['updated_at']}, pid {report['pid']})")
    else:
        print("daemon: NOT running (no status published yet)")
    for name, src in report.get("sources", {}).items():
        detail = f": {src['detail']}" if src.get("detail") else ""
        last = f", last item {src['last_item']}" if src.get("last_item") else ""
        print(f"  {name}: {src['state']} since {src['since']}{last}{detail}")
    counts = report.get("counts", {})
    if counts:
        print("counts: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if report.get("last_reload"):
        r = report["last_reload"]
        print(f"last reload: {r['result']} at {r['at']}")
    stamping = report.get("timestamps") or {}
    if stamping.get("state") == "failing":
        print(
            f"timestamps: FAILING since {stamping['since']} ({stamping.get('failures')} tries, "
            f"next in {stamping.get('retry_in')} s): {stamping.get('error')}"
        )
    elif stamping:
        print(f"timestamps: ok since {stamping['since']}")
    vault = report["vault"]
    checked = "journal, witness and blobs" if vault["blobs_checked"] else "journal and witness"
    state = "intact" if vault["intact"] else "PROBLEMS"
    print(f"vault {vault['tenant']}: {vault['entries']} entries, {state} ({checked} checked)")
    last = vault.get("last_timestamp")
    if last:
        print(f"  last trusted timestamp: {last['gen_time']} over entries 1-{last['tree_size']}")
    for problem in vault["problems"]:
        print(f"  {problem}", file=sys.stderr)
