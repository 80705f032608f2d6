"""The ``guardmail`` command.

Exit codes: 0 success; 1 a check failed (``evidence verify`` found a problem) or an operation
failed at run time; 2 bad input: unreadable config or file, invalid arguments, a state file that
is corrupt or that this user may not read (one line naming the file).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from guardmail import __version__
from guardmail.commands import (
    EXIT_FAILED,
    EXIT_USAGE,
    basic,
    case,
    client,
    evidence,
    imports,
    login,
    refuse_tenant,
    report,
    review,
    service,
    sieve,
    status,
    warn,
)
from guardmail.errors import ConfigError, GuardmailError, StateError

DEFAULT_CONFIG = "/etc/guardmail/guardmail.yaml"

# Each module registers its subcommands (see guardmail/commands/__init__.py).
COMMAND_MODULES = (
    basic,
    evidence,
    case,
    service,
    sieve,
    status,
    warn,
    report,
    review,
    client,
    imports,
    login,
)


def _parser() -> argparse.ArgumentParser:
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
    for module in COMMAND_MODULES:
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
