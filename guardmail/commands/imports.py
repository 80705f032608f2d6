"""import: evidence from before guardmail, from files, folders, an IMAP folder, chat logs.

  guardmail import mbox FILE            an mbox file (Thunderbird's, mutt's, a Takeout export)
  guardmail import eml FOLDER           every *.eml file under FOLDER
  guardmail import maildir FOLDER       a Maildir folder (its cur/ and new/)
  guardmail import imap SOURCE [--folder NAME]   a folder of a configured IMAP source
  guardmail import gajim FILE           Gajim's history database (~/.local/share/gajim/logs.db)
  guardmail import xmpp SOURCE --since YYYY-MM-DD   a configured XMPP account's server archive

Each item is judged by the same rules as live mail and chat; the offenders' items (with
--all, every item) are archived byte for byte, their entries saying where they were imported
from and when, and that guardmail did not receive them. Nothing is moved, deleted or flagged in
the source and no warning is sent. Progress goes to stderr. Run it again at any time (after an
interruption, or after adding offenders): what is archived already is not archived twice.

Exit codes: 0 done; 1 the vault could not take the items (what was archived stays; run it
again); 2 bad input (no such file, not an mbox, unknown IMAP source, config error); 130
interrupted (Ctrl-C; run it again to go on).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path

from guardmail.channels.imap.fetch import ImapFolder
from guardmail.channels.xmpp.mamimport import MamArchive
from guardmail.commands import EXIT_OK, EXIT_USAGE, Subparsers, load, tenant_settings
from guardmail.config.settings import Settings
from guardmail.daemon.tenant import open_tenant
from guardmail.imports import MAX_ITEM_BYTES, UnreadableSource
from guardmail.imports.engine import Settings as ImportSettings
from guardmail.imports.engine import Source, run_import
from guardmail.imports.files import EmlFolder, MaildirFolder, Mbox
from guardmail.imports.gajim import GajimHistory
from guardmail.imports.progress import Progress, line

EXIT_INTERRUPTED = 130  # as a shell reports SIGINT
KINDS = ("mbox", "eml", "maildir", "imap", "gajim", "xmpp")


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "import",
        help="archive evidence from before guardmail (mbox, .eml, Maildir, IMAP, Gajim)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=KINDS, help="what WHAT is")
    p.add_argument(
        "what", help="the file or folder; for imap and xmpp, the configured source's name"
    )
    p.add_argument("--folder", default="INBOX", help="imap: the folder to import (INBOX)")
    p.add_argument(
        "--since",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="xmpp: the archive from this day (UTC) on (required)",
    )
    p.add_argument("--all", action="store_true", help="archive every item, not only the offenders'")
    p.add_argument(
        "--max-item-bytes",
        type=int,
        default=MAX_ITEM_BYTES,
        metavar="N",
        help=f"skip (and report) items larger than N bytes (default {MAX_ITEM_BYTES})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=cmd_import)


def source_of(args: argparse.Namespace, settings: Settings) -> Source:
    """The reader for ``args``; UnreadableSource if the source cannot be one."""
    limit = max(1, int(args.max_item_bytes))
    if args.kind == "xmpp":
        if args.since is None:
            raise UnreadableSource("import xmpp needs --since YYYY-MM-DD (how far back to read)")
        for xcfg in settings.sources.xmpp:
            if xcfg.name == args.what:
                since = datetime.combine(args.since, time(0), tzinfo=UTC)
                return MamArchive(xcfg, since, max_item=limit)
        known = ", ".join(c.name for c in settings.sources.xmpp) or "none"
        raise UnreadableSource(f"no XMPP source named {args.what!r} in the config (known: {known})")
    if args.kind == "imap":
        for cfg in settings.sources.imap:
            if cfg.name == args.what:
                return ImapFolder(cfg, args.folder, max_item=limit)
        known = ", ".join(c.name for c in settings.sources.imap) or "none"
        raise UnreadableSource(f"no IMAP source named {args.what!r} in the config (known: {known})")
    path = Path(args.what).absolute()
    if args.kind == "mbox":
        return Mbox(path, max_item=limit)
    if args.kind == "eml":
        return EmlFolder(path, max_item=limit)
    if args.kind == "maildir":
        return MaildirFolder(path, max_item=limit)
    return GajimHistory(path, max_item=limit)


def cmd_import(args: argparse.Namespace) -> int:
    settings = tenant_settings(args, load(args))
    try:
        source = source_of(args, settings)
    except UnreadableSource as exc:
        print(f"guardmail: {exc}", file=sys.stderr)
        return EXIT_USAGE
    tenant = open_tenant(settings)
    progress = Progress(None if args.quiet else sys.stderr)
    options = ImportSettings(tenant=settings.tenant, account=source.name, everything=args.all)
    try:
        counts = run_import(source, pipeline=tenant.pipeline, settings=options, progress=progress)
    except UnreadableSource as exc:
        print(f"guardmail: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # The batch in flight was rolled back; what was committed stays and is skipped next time.
        print("guardmail: import interrupted; run it again to go on", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        tenant.close()
    print(line(counts, total=source.total, elapsed=progress.elapsed()).removeprefix("import: "))
    if counts.too_large:
        print(
            f"{counts.too_large} item(s) larger than {args.max_item_bytes} bytes were not "
            "archived (see the log; raise --max-item-bytes to take them)"
        )
    return EXIT_OK
