"""case note, list, show: the protected person's own case journal (notes kept as evidence).

``case note TEXT [--attach FILE]... [--offender NAME] [--kind KIND] [--to WHOM]`` journals a
note (see guardmail.vault.notes); ``--kind abuse-report --to abuse@provider`` records an abuse
report sent by hand (the report's timeline shows it as sent); ``case list`` prints one line per
note; ``case show SEQ`` the whole note and its files' hashes. Notes are listed in
``evidence list`` and go into evidence exports.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from guardmail.commands import (
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    load,
    load_read_only,
    tenant_settings,
)
from guardmail.daemon.tenant import open_tenant
from guardmail.vault.notes import NOTE_KINDS, add_note, note_of

MAX_ATTACH = 64 * 1024 * 1024  # bytes per attached file: a scan or a photo, not a video archive


def register(sub: Subparsers) -> None:
    case = sub.add_parser("case", help="your case journal: notes of what you did, with files")
    cs = case.add_subparsers(dest="case_command", required=True)
    note = cs.add_parser("note", help='journal a note, e.g. "Called police, report 2026-1234"')
    note.add_argument("text")
    note.add_argument(
        "--attach", action="append", default=[], type=Path, help="a file to keep with it (repeat)"
    )
    note.add_argument(
        "--offender", default="", help="only about this offender (exported only with them)"
    )
    note.add_argument(
        "--kind",
        choices=NOTE_KINDS,
        default="note",
        help="what you did: abuse-report (sent to a provider), police, court, help (an "
        "organisation contacted); default note",
    )
    note.add_argument("--to", default="", help="to whom, e.g. abuse@example.net or a name")
    note.set_defaults(handler=cmd_note)
    ls = cs.add_parser("list", help="every note, oldest first")
    ls.set_defaults(handler=cmd_list)
    show = cs.add_parser("show", help="one note in full, with its files' SHA-256")
    show.add_argument("seq", type=int)
    show.set_defaults(handler=cmd_show)


def _usage(message: str) -> int:
    print(f"guardmail: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_note(args: argparse.Namespace) -> int:
    files: list[tuple[str, bytes]] = []
    for path in args.attach:
        try:
            size = path.stat().st_size
            if size > MAX_ATTACH:
                return _usage(f"{path} is {size} bytes; attach at most {MAX_ATTACH} bytes a file")
            files.append((path.name, path.read_bytes()))
        except OSError as exc:
            return _usage(f"{path} cannot be read: {exc.strerror or exc}")
    settings = tenant_settings(args, load(args))
    if args.offender:
        known = {o.name.casefold(): o.name for o in settings.offenders}
        if args.offender.casefold() not in known:
            names = ", ".join(known.values()) or "none"
            return _usage(f"unknown offender {args.offender!r} (known: {names})")
        args.offender = known[args.offender.casefold()]
    tenant = open_tenant(settings)
    try:
        note = add_note(
            tenant.vault,
            args.text,
            files=files,
            offender=args.offender,
            kind=args.kind,
            to=args.to,
            now=datetime.now(UTC),
        )
    except ValueError as exc:
        return _usage(str(exc))
    finally:
        tenant.close()
    print(f"note journaled as entry {note.seq} at {note.time:%Y-%m-%d %H:%M:%S} UTC")
    for f in note.files:
        print(f"  kept {f.name} ({f.size} bytes, SHA-256 {f.sha256})")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    tenant = open_tenant(tenant_settings(args, load_read_only(args)))
    try:
        for row in tenant.vault.iter_rows(kind="note"):
            note = note_of(row)
            if note is None:
                continue
            first = " ".join(note.text.split())
            first = first if len(first) <= 70 else first[:69] + "\u2026"
            n = len(note.files)
            extra = f"  [{n} file{'s' if n != 1 else ''}]" if n else ""
            about = f"  ({note.offender})" if note.offender else ""
            kind = (
                f"[{note.kind}{' to ' + note.to if note.to else ''}] "
                if note.kind != "note"
                else ""
            )
            print(f"{note.seq:>6}  {note.time:%Y-%m-%d %H:%M}  {kind}{first}{about}{extra}")
    finally:
        tenant.close()
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    tenant = open_tenant(tenant_settings(args, load_read_only(args)))
    try:
        row = tenant.vault.row(args.seq)
        note = note_of(row) if row is not None else None
    finally:
        tenant.close()
    if note is None:
        return _usage(f"no note with seq {args.seq} (see guardmail case list)")
    print(f"note {note.seq}, {note.time:%Y-%m-%d %H:%M:%S} UTC")
    if note.offender:
        print(f"about: {note.offender}")
    if note.kind != "note":
        print(f"kind:  {note.kind}" + (f", to {note.to}" if note.to else ""))
    elif note.to:
        print(f"to:    {note.to}")
    print()
    print(note.text)
    for f in note.files:
        print(f"\nfile: {f.name}\n  {f.size} bytes, SHA-256 {f.sha256}")
    return EXIT_OK
