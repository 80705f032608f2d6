"""The ``guardmail`` command.

Exit codes: 0 success; 1 a check failed (``evidence verify`` found a problem) or an operation
failed at run time; 2 bad input: unreadable config or file, invalid arguments, a state file that
is corrupt or that this user may not read (one line naming the file).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from guardmail import __version__
from guardmail.commands import EXIT_FAILED, EXIT_USAGE, refuse_tenant
from guardmail.errors import ConfigError, GuardmailError, StateError

DEFAULT_CONFIG = "/etc/guardmail/guardmail.yaml"

# Each module of guardmail.commands registers its subcommands (see its __init__), in this
# order in the help. Only the module of the command being run is imported: the daemon (`run`)
# then holds neither the PDF nor the export, OAuth or import code in memory, and a short
# command starts faster. A new command is one line here (tests/unit/test_cli.py checks it).
COMMANDS: dict[str, tuple[str, ...]] = {
    "basic": ("run", "check-config", "schema", "explain"),
    "evidence": ("evidence",),
    "case": ("case",),
    "service": ("install-service",),
    "sieve": ("sieve",),
    "status": ("status",),
    "warn": ("warn",),
    "report": ("report",),
    "review": ("review",),
    "client": ("native-host", "install-client"),
    "imports": ("import",),
    "login": ("login",),
}
_GLOBAL_WITH_VALUE = ("-c", "--config", "--tenant")


def command_modules(argv: Sequence[str]) -> list[ModuleType]:
    """The command modules to register for ``argv``: the one that has its command, or every
    one (help, a typo, no command: argparse then lists them all)."""
    names = list(COMMANDS)
    args = iter(argv)
    for arg in args:
        if arg in _GLOBAL_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            names = [m for m, commands in COMMANDS.items() if arg in commands] or names
            break
    return [importlib.import_module(f"guardmail.commands.{name}") for name in names]


def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="guardmail", description=__doc__.splitlines()[0])
    p.add_argument(
        "-c",
        "--config",
        default=os.environ.get("GUARDMAIL_CONFIG", DEFAULT_CONFIG),
        help=f"configuration file (default: $GUARDMAIL_CONFIG or {DEFAULT_CONFIG})",
    )
    p.add_argument(
        "--tenant",
        metavar="NAME",
        help="for an ISP: work on this tenant of sources.smtp_filter.tenants_dir (its vault, "
        "offenders and warning); refused by commands that have no use for one",
    )
    p.add_argument("--version", action="version", version=f"guardmail {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for module in command_modules(argv):
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv).parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    why = getattr(args, "no_tenant", None)
    if why is not None and (refused := refuse_tenant(args, why)) is not None:
        return refused
    try:
        return handler(args)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EXIT_USAGE
    except StateError as exc:
        print(f"guardmail: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except GuardmailError as exc:
        print(f"guardmail: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except PermissionError as exc:
        where = exc.filename if exc.filename is not None else "a file"
        print(
            f"guardmail: {where}: permission denied (run guardmail as a user that may use it, "
            "e.g. the owner of the state directory: sudo -u guardmail guardmail ...)",
            file=sys.stderr,
        )
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
