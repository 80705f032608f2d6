"""evidence list, show, verify, key, export: reading the vault (abuse-report: evidence_abuse).

``verify PATH`` checks an export bundle on its own: no config, no vault.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from guardmail import __version__
from guardmail.commands import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    evidence_abuse,
    evidence_dkim,
    load_read_only,
    refuse_tenant,
    tenant_settings,
)
from guardmail.commands.evidence_abuse import unknown_offender
from guardmail.commands.evidence_list import KINDS, evidence_row, list_evidence
from guardmail.daemon.tenant import open_tenant
from guardmail.errors import StateError, VaultUnavailable
from guardmail.export import BundleUnreadable
from guardmail.export.evidence import Criteria
from guardmail.export.progress import ProgressLine
from guardmail.export.selection import select
from guardmail.export.verify import handed_out_head, verify_bundle
from guardmail.vault.custody import local_user, record_verify, record_view
from guardmail.vault.journal import Problem
from guardmail.vault.signing import fingerprint, load_key, make_key, public_pem
from guardmail.vault.store import Vault
from guardmail.vault.treelog import check_handed_out
from guardmail.vault.verify import verify_vault

# Below this many items an export is quick enough that a progress line is only noise.
PROGRESS_MIN_ITEMS = 200


def register(sub: Subparsers) -> None:
    ev = sub.add_parser("evidence", help="the evidence vault").add_subparsers(
        dest="evidence_command", required=True
    )
    ls = ev.add_parser("list", help="evidence: received items, sent warnings, abuse reports")
    ls.add_argument("--json", action="store_true", help="JSON lines")
    ls.add_argument(
        "--kind",
        action="append",
        choices=(*KINDS, "custody"),
        help="only this kind (repeat; default: all but custody, the record of who viewed, "
        "exported, verified or decided what)",
    )
    ls.set_defaults(handler=cmd_evidence)
    show = ev.add_parser("show", help="an evidence entry's raw bytes, unaltered, to stdout")
    show.add_argument("seq", type=int)
    show.set_defaults(handler=cmd_evidence)
    verify = ev.add_parser(
        "verify",
        help="check the vault, or an exported bundle (exit 1 naming what is off)",
    )
    verify.add_argument(
        "path",
        nargs="?",
        type=Path,
        help="an exported bundle (folder or .zip) to check on its own, without the vault",
    )
    verify.add_argument(
        "--against",
        type=Path,
        action="append",
        default=[],
        metavar="BUNDLE",
        help="also check the vault against the signed tree head of a bundle exported earlier "
        "(repeat): its entries must be unchanged since",
    )
    verify.set_defaults(handler=cmd_verify)

    key = ev.add_parser(
        "key",
        help="the public key that signs the vault's tree heads, and its fingerprint "
        "(made now if the tenant has none yet)",
    )
    key.set_defaults(handler=cmd_key)
    evidence_dkim.register(ev)

    ex = ev.add_parser("export", help="write a verifiable evidence bundle (folder, or .zip)")
    ex.add_argument("--offender", action="append", default=[], help="only this offender (repeat)")
    ex.add_argument("--since", type=_iso_date, help="first day, YYYY-MM-DD (UTC, inclusive)")
    ex.add_argument("--until", type=_iso_date, help="last day, YYYY-MM-DD (UTC, inclusive)")
    ex.add_argument("--out", type=Path, required=True, help="new folder, or a file ending .zip")
    ex.add_argument(
        "--no-bodies",
        action="store_true",
        help="a summary copy: the report leaves the messages' text out (the files stay)",
    )
    ex.set_defaults(handler=cmd_export)

    evidence_abuse.register(ev)


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a date of the form YYYY-MM-DD"
        ) from None


def _usage(message: str) -> int:
    print(f"guardmail: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_evidence(args: argparse.Namespace) -> int:
    loaded = load_read_only(args)
    tenant = open_tenant(tenant_settings(args, loaded))
    try:
        vault = tenant.vault
        if args.evidence_command == "list":
            list_evidence(vault, kinds=tuple(args.kind or KINDS), as_json=args.json)
            return EXIT_OK
        # show
        found = evidence_row(vault, args.seq)
        if found is None or found.sha256 is None:
            print(f"guardmail: no evidence entry with seq {args.seq}", file=sys.stderr)
            return EXIT_USAGE
        data = vault.blobs.get(found.sha256)
        try:  # the view is journaled before anything is shown (guardmail.vault.custody)
            record_view(
                vault, found, command="evidence show", by=local_user(), now=datetime.now(UTC)
            )
        except VaultUnavailable as exc:
            print(f"guardmail: nothing shown: the view cannot be journaled: {exc}", file=sys.stderr)
            return EXIT_FAILED
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return EXIT_OK
    finally:
        tenant.close()


def cmd_verify(args: argparse.Namespace) -> int:
    if args.path is not None:
        if args.against:
            return _usage("--against checks the vault: give no bundle PATH with it")
        why = "a bundle is checked on its own, without a config or a vault"
        return refuse_tenant(args, why) or _verify_bundle(args.path)
    loaded = load_read_only(args)
    tenant = open_tenant(tenant_settings(args, loaded))
    try:
        vault = tenant.vault
        problems = verify_vault(vault)
        try:
            problems += _against(vault, args.against)
        except BundleUnreadable as exc:
            return _usage(str(exc))
        for problem in problems:
            print(f"guardmail: vault {tenant.name}: {problem}", file=sys.stderr)
        entries = sum(1 for _ in vault.iter_rows())
        try:
            record_verify(
                vault,
                entries=entries,
                problems=len(problems),
                against=len(args.against),
                by=local_user(),
                now=datetime.now(UTC),
            )
        except VaultUnavailable as exc:
            print(f"guardmail: the verification cannot be journaled: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if problems:
            return EXIT_FAILED
        print(f"vault {tenant.name}: {entries} entries intact")
        return EXIT_OK
    finally:
        tenant.close()


def cmd_key(args: argparse.Namespace) -> int:
    loaded = load_read_only(args)
    tenant = open_tenant(tenant_settings(args, loaded))
    try:
        key = make_key(tenant.vault.root)
    finally:
        tenant.close()
    public = key.public_key()
    print(public_pem(public), end="")
    print(f"fingerprint (SHA-256 of the raw Ed25519 key): {fingerprint(public)}")
    return EXIT_OK


def _against(vault: Vault, bundles: list[Path]) -> list[Problem]:
    """The vault against the signed heads of bundles handed out earlier (``--against``)."""
    if not bundles:
        return []
    rows = vault.stored_rows()
    try:
        own = load_key(vault.root)
    except StateError:
        own = None  # verify_vault reports it
    problems: list[Problem] = []
    for bundle in bundles:
        head, pem = handed_out_head(bundle)
        problems += check_handed_out(rows, head, str(bundle))
        if own is None or public_pem(own.public_key()) != pem:
            problems.append(
                Problem(
                    seq=0,
                    message=f"{bundle}: its head was signed by another key than the "
                    "vault's (the vault's key was replaced, or the bundle is not from this vault)",
                )
            )
    return problems


def _verify_bundle(path: Path) -> int:
    try:
        problems = verify_bundle(path)
    except BundleUnreadable as exc:
        return _usage(str(exc))
    for problem in problems:
        print(f"guardmail: {path}: {problem}", file=sys.stderr)
    if problems:
        return EXIT_FAILED
    print(f"{path}: bundle intact")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    # Imported here: the report's chart and PDF libraries take ~0.3 s to load, and every other
    # command (the daemon included) has no use for them.
    from guardmail.export.bundle import ReportOptions, write_bundle

    if args.since and args.until and args.since > args.until:
        return _usage(f"--since {args.since} is after --until {args.until}")
    if args.out.exists() or args.out.is_symlink():
        return _usage(f"{args.out} already exists; exports never overwrite")
    loaded = load_read_only(args)
    settings = tenant_settings(args, loaded)
    tenant = open_tenant(settings)
    try:
        rows = tenant.vault.rows()
        problem = unknown_offender(args.offender, [o.name for o in settings.offenders], rows)
        if problem:
            return _usage(problem)
        criteria = Criteria(offenders=tuple(args.offender), since=args.since, until=args.until)
        evidence = select(rows, tenant=tenant.name, criteria=criteria)
        if not evidence.items:
            return _usage("no archived item matches " + _describe(criteria))
        progress = None
        if sys.stderr.isatty() and len(evidence.items) >= PROGRESS_MIN_ITEMS:
            progress = ProgressLine(sys.stderr)
        try:
            result = write_bundle(
                tenant.vault,
                evidence,
                args.out,
                now=datetime.now(UTC),
                version=__version__,
                progress=progress,
                options=ReportOptions(
                    bodies=not args.no_bodies, protected=settings.case.lines(tenant.name)
                ),
                by=local_user(),
            )
        finally:
            if progress is not None:
                progress.close()
    except FileExistsError as exc:
        return _usage(str(exc))
    finally:
        tenant.close()
    warned = f", {result.warnings} warning" if result.warnings else ""
    print(
        f"exported {result.items} items{warned} ({', '.join(evidence.offenders)}) to {result.path}"
    )
    print(f"  SHA256SUMS  {result.sums_sha256}")
    print(f"  size        {result.size} bytes")
    print(f"  journaled   as entry {result.journal_seq} (export)")
    print(f"  check with  guardmail evidence verify {result.path}")
    return EXIT_OK


def _describe(c: Criteria) -> str:
    parts = [f"offender {', '.join(c.offenders)}" if c.offenders else "any offender"]
    if c.since:
        parts.append(f"since {c.since}")
    if c.until:
        parts.append(f"until {c.until}")
    return " ".join(parts)
