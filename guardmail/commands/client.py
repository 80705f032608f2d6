"""install-client, native-host: connecting mail and chat clients to guardmail.

``guardmail install-client thunderbird`` writes the native messaging host (a small wrapper that
runs ``guardmail -c CONFIG native-host``) and its manifest in
``~/.mozilla/native-messaging-hosts/`` (Thunderbird reads the same directory as Firefox), and
says where the add-on's ``.xpi`` is. ``guardmail install-client neomutt`` says what to add to
the neomuttrc. Both make ``offenders.d/`` beside the config and say what to add to the config
when it does not load the reported offenders file yet.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import guardmail
from guardmail.commands import EXIT_OK, Subparsers, load
from guardmail.commands.report import NO_TENANT
from guardmail.config.settings import LoadedConfig
from guardmail.control.nativehost import EXTENSION_ID, HOST_NAME, Host, serve
from guardmail.control.offenders import load_hint, loads_reported, reported_path

PLUGINS = Path(guardmail.__file__).resolve().parents[1] / "plugins"
XPI = PLUGINS / "thunderbird" / "dist" / "guardmail-report.xpi"


def register(sub: Subparsers) -> None:
    host = sub.add_parser(
        "native-host", help="the Thunderbird add-on's native messaging host (stdio)"
    )
    # Thunderbird passes the manifest path and the extension id; neither is needed.
    host.add_argument("mozilla_args", nargs="*", help=argparse.SUPPRESS)
    host.add_argument("--no-daemon", action="store_true", help="work in-process always")
    host.set_defaults(handler=cmd_native_host, no_tenant=NO_TENANT)

    install = sub.add_parser("install-client", help="connect a mail or chat client to guardmail")
    install.add_argument("client", choices=["thunderbird", "neomutt"])
    install.add_argument(
        "--home", type=Path, default=None, help="the user's home directory (default: $HOME)"
    )
    install.set_defaults(handler=cmd_install_client, no_tenant=NO_TENANT)


def cmd_native_host(args: argparse.Namespace) -> int:
    serve(sys.stdin.buffer, sys.stdout.buffer, Host(load(args), in_process=args.no_daemon))
    return EXIT_OK


def host_manifest(path: Path) -> dict[str, object]:
    return {
        "name": HOST_NAME,
        "description": "guardmail: keep a message as evidence and block its sender",
        "path": str(path),
        "type": "stdio",
        "allowed_extensions": [EXTENSION_ID],
    }


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def _offenders_dir(config: LoadedConfig) -> None:
    path = reported_path(config.path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not loads_reported(config, path):
        print(f"NOTE: so that the daemon blocks what you report, {load_hint(config, path)}")


def cmd_install_client(args: argparse.Namespace) -> int:
    config = load(args)
    home = args.home if args.home is not None else Path.home()
    if args.client == "neomutt":
        print(
            f"Add this line to your neomuttrc:\n  source {PLUGINS / 'neomutt' / 'guardmail.muttrc'}"
        )
        print(f"and put {PLUGINS / 'neomutt'} on your PATH (for guardmail-neomutt), and")
        print(f"  setenv GUARDMAIL_CONFIG {config.path}")
        _offenders_dir(config)
        return EXIT_OK
    wrapper = home / ".local" / "share" / "guardmail" / "native-host"
    command = [sys.executable, "-m", "guardmail", "-c", str(config.path), "native-host"]
    _write(wrapper, f'#!/bin/sh\nexec {shlex.join(command)} "$@"\n', 0o755)
    manifest = home / ".mozilla" / "native-messaging-hosts" / f"{HOST_NAME}.json"
    _write(manifest, json.dumps(host_manifest(wrapper), indent=2) + "\n", 0o644)
    print(f"native messaging host: {manifest}")
    print(f"  runs: {wrapper}")
    if XPI.exists():
        print(
            f"Install the add-on in Thunderbird (Add-ons > gear > Install Add-on From File): {XPI}"
        )
    else:
        build = PLUGINS / "thunderbird" / "build-xpi.sh"
        print(f"Build the add-on with {build}, then install {XPI} in Thunderbird")
    _offenders_dir(config)
    return EXIT_OK
