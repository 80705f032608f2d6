"""login: sign an account in once with OAuth2 (``auth: oauth2``) and keep its tokens.

``guardmail login --account NAME`` takes NAME from ``sources.imap`` (or ``warning`` for the
warning's submission server), runs the device flow (a URL and a code, any device) or the
loopback flow (a URL to open in a browser on this machine), and stores the tokens in the state
directory (0600). Nothing secret is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from guardmail.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Subparsers, load
from guardmail.config.oauth import OAuth2Config
from guardmail.config.warning import WARNING_ACCOUNT
from guardmail.errors import SecretError
from guardmail.oauth.flows import LoginFailed, device_flow, loopback_flow
from guardmail.oauth.store import TokenStore


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "login",
        help="sign an account in with OAuth2 once (Outlook, Gmail ...); the daemon renews it",
        description="Run the OAuth2 sign-in of an account with auth: oauth2 and keep its "
        "tokens in the state directory.",
    )
    p.add_argument(
        "--account",
        required=True,
        metavar="NAME",
        help=f"a sources.imap name, or {WARNING_ACCOUNT!r} for the warning's SMTP server",
    )
    p.add_argument(
        "--flow",
        choices=("device", "browser"),
        help="device: a URL and a code to type on any device (default when the provider has "
        "it); browser: a URL to open on this machine, answered at http://127.0.0.1:PORT/",
    )
    p.add_argument(
        "--port",
        type=int,
        default=0,
        help="browser flow: the loopback port to wait on (default: any free one)",
    )
    p.set_defaults(handler=cmd_login, no_tenant="accounts are in the main configuration")


def _account(args: argparse.Namespace) -> tuple[OAuth2Config | None, str]:
    settings = load(args).settings
    for imap in settings.sources.imap:
        if imap.name == args.account:
            return imap.oauth2, f"IMAP account {imap.name!r}"
    smtp = settings.warning.smtp if settings.warning else None
    if args.account == WARNING_ACCOUNT and smtp is not None:
        return smtp.oauth2, "the warning's SMTP server"
    names = [i.name for i in settings.sources.imap] + ([WARNING_ACCOUNT] if smtp else [])
    raise LookupError(f"no account named {args.account!r} (there: {', '.join(names) or 'none'})")


def _show(line: str) -> None:
    print(line, flush=True)


def cmd_login(args: argparse.Namespace) -> int:
    try:
        cfg, what = _account(args)
    except LookupError as exc:
        print(f"guardmail: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if cfg is None or cfg.token_file is None:
        print(f"guardmail: {what} does not use auth: oauth2; nothing to sign in", file=sys.stderr)
        return EXIT_USAGE
    flow = args.flow or ("device" if cfg.device_authorization_endpoint else "browser")
    if flow == "device" and cfg.device_authorization_endpoint is None:
        print(f"guardmail: {what} has no device_authorization_endpoint", file=sys.stderr)
        return EXIT_USAGE
    if flow == "browser" and cfg.authorization_endpoint is None:
        print(f"guardmail: {what} has no authorization_endpoint", file=sys.stderr)
        return EXIT_USAGE
    _show(f"Signing in {what} ({flow} flow).")
    try:
        if flow == "device":
            tokens = device_flow(cfg, show=_show)
        else:
            tokens = loopback_flow(cfg, show=_show, port=args.port)
    except (LoginFailed, SecretError) as exc:
        print(f"guardmail: {exc}", file=sys.stderr)
        return EXIT_FAILED
    store = TokenStore(Path(cfg.token_file))
    with store.locked():
        store.save(tokens)
    _show(f"Signed in. The tokens are kept in {store.path} (0600); the daemon renews them.")
    return EXIT_OK
