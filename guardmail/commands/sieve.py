"""sieve export, sieve install: offender rules filed by the mail server itself."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from guardmail import __version__
from guardmail.channels.tls import client_context
from guardmail.commands import (
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    load,
    refuse_tenant,
    tenant_settings,
)
from guardmail.config.fields import is_loopback
from guardmail.config.secrets import read_secret
from guardmail.daemon.tenant import build_rules
from guardmail.errors import PeerError, SecretError
from guardmail.sieve.install import install
from guardmail.sieve.managesieve import ManageSieve
from guardmail.sieve.script import export_script

# Pigeonhole's usual extensions; `install` asks the server instead.
DEFAULT_EXTENSIONS = "fileinto mailbox envelope subaddress regex include"


def register(sub: Subparsers) -> None:
    sv = sub.add_parser("sieve", help="offender rules as a Sieve script").add_subparsers(
        dest="sieve_command", required=True
    )
    ex = sv.add_parser("export", help="print the offender rules as a Sieve script")
    ex.add_argument("--folder", default="Quarantine", help="folder to file offenders' mail in")
    ex.add_argument("--extensions", default=DEFAULT_EXTENSIONS, help="the server's extensions")
    ex.set_defaults(handler=cmd_export)
    ins = sv.add_parser(
        "install", help="upload and activate over ManageSieve, keeping the user's own script"
    )
    ins.add_argument("--account", help="take host, user and password from sources.imap NAME")
    ins.add_argument("--host")
    ins.add_argument("--port", type=int, default=4190)
    ins.add_argument("--user")
    ins.add_argument("--password-file", type=Path)
    ins.add_argument("--tls", choices=("starttls", "none"), default=None)
    ins.add_argument("--ca-file", type=Path)
    ins.add_argument("--folder", default=None, help="default: the account's quarantine_folder")
    ins.set_defaults(handler=cmd_install)


def _generated() -> str:
    stamp = datetime.now(UTC).replace(microsecond=0).isoformat()
    return f"Generated {stamp} by guardmail {__version__}."


def cmd_export(args: argparse.Namespace) -> int:
    loaded = load(args)
    script = export_script(
        build_rules(tenant_settings(args, loaded)).offenders,
        folder=args.folder,
        extensions=args.extensions.split(),
        generated=_generated(),
    )
    sys.stdout.write(script)
    return EXIT_OK


def cmd_install(args: argparse.Namespace) -> int:
    if args.account:
        why = (
            "--account names an IMAP account of the main config; for a tenant's mailbox "
            "give --host, --user and --password-file"
        )
        if (refused := refuse_tenant(args, why)) is not None:
            return refused
    loaded = load(args)
    settings = tenant_settings(args, loaded)  # whose offenders the script files
    host, user, secret_file, secret_command = args.host, args.user, args.password_file, None
    ca_file, tls, folder = args.ca_file, args.tls, args.folder
    if args.account:
        matches = [a for a in loaded.settings.sources.imap if a.name == args.account]
        if not matches:
            print(f"guardmail: no IMAP account named {args.account!r}", file=sys.stderr)
            return EXIT_USAGE
        acct = matches[0]
        host, user = host or acct.host, user or acct.username
        secret_file = secret_file or acct.password_file
        secret_command = None if args.password_file else acct.password_command
        ca_file = ca_file or acct.ca_file
        tls = tls or ("none" if acct.tls == "none" else "starttls")
        folder = folder or acct.quarantine_folder
    tls, folder = tls or "starttls", folder or "Quarantine"
    if not (host and user and (secret_file or secret_command)):
        print("guardmail: give --account, or --host, --user and --password-file", file=sys.stderr)
        return EXIT_USAGE
    if tls == "none" and not is_loopback(host):
        print(f"guardmail: --tls none would send the password to {host} in clear", file=sys.stderr)
        return EXIT_USAGE
    try:
        password = read_secret(file=secret_file, command=secret_command)
        client = ManageSieve(host, args.port)
    except (SecretError, OSError) as exc:
        print(f"guardmail: cannot reach ManageSieve at {host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if tls == "starttls":
            client.starttls(client_context(ca_file))
        client.authenticate(user, password)
        script = export_script(
            build_rules(settings).offenders,
            folder=folder,
            extensions=client.extensions,
            generated=_generated(),
        )
        print(install(client, script))
    except (PeerError, OSError) as exc:
        raise PeerError(f"sieve install on {host}: {exc}") from None
    finally:
        client.logout()
    return EXIT_OK
