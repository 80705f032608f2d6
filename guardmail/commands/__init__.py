"""The ``guardmail`` subcommands, one module per group.

Each module has ``register(sub)``, which adds its parsers with ``set_defaults(handler=...)``;
a handler takes the parsed arguments and returns the exit code. ``guardmail.cli`` lists the
modules; a new command group is a new module plus one line there.

``--tenant NAME`` (an ISP's tenants.d) is honoured by every command that reads or judges with a
tenant's data: it takes that tenant's settings from ``tenant_settings``, never the main ones.
A command for which a tenant makes no sense says so in ``set_defaults(no_tenant=WHY)``, and
``guardmail.cli`` refuses ``--tenant`` for it with a usage error (exit 2) that gives WHY.

Read-only commands (status, evidence list/show/verify/export, explain) load with
``load_read_only``: when the config file has errors but the daemon recorded the last good
configuration it runs (``guardmail.daemon.lastgood``), they work on that one, after a warning
on stderr naming the file's errors; their exit code is then their own. Commands that change
something (report, warn, sieve install ...) use ``load`` and refuse a broken file (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from guardmail.config.settings import LoadedConfig, Settings, load_config
from guardmail.config.tenants import load_tenants
from guardmail.daemon.lastgood import recall, state_dir_of
from guardmail.errors import ConfigError, GuardmailError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# argparse's type for what add_subparsers() returns (generic for type checkers only).
if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction


def load(args: argparse.Namespace) -> LoadedConfig:
    """The configuration named by ``-c``; ConfigError propagates to ``cli.main`` (exit 2)."""
    return load_config(Path(args.config))


def load_read_only(args: argparse.Namespace) -> LoadedConfig:
    """``load``, or the last good configuration the daemon runs when the file has errors."""
    path = Path(args.config)
    try:
        return load_config(path)
    except ConfigError as exc:
        cwd = Path.cwd()
        last = recall(cwd / path, state_dir_of(cwd / path, cwd=cwd))
        if last is None:
            raise
        print(
            f"guardmail: WARNING: {args.config} has errors, so this uses the last good "
            f"configuration the daemon loaded, at {last.loaded_at} (a running daemon runs "
            "that one); fix the file:",
            file=sys.stderr,
        )
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return last.config


def refuse_tenant(args: argparse.Namespace, why: str) -> int | None:
    """EXIT_USAGE, having said ``why``, when ``--tenant`` was given; None otherwise."""
    name = getattr(args, "tenant", None)
    if not name:
        return None
    print(f"guardmail: --tenant {name} does not apply here: {why}", file=sys.stderr)
    return EXIT_USAGE


def tenant_settings(args: argparse.Namespace, loaded: LoadedConfig) -> Settings:
    """The settings of the tenant ``--tenant`` names (an ISP's tenants.d), else the main one."""
    name = getattr(args, "tenant", None)
    if not name or name == loaded.settings.tenant:
        return loaded.settings
    smtp_filter = loaded.settings.sources.smtp_filter
    if smtp_filter is None:
        raise GuardmailError(f"--tenant {name!r}: this config has no sources.smtp_filter tenants")
    tenants = load_tenants(smtp_filter.tenants_dir, reserved={loaded.settings.tenant})
    for tenant in tenants.tenants:
        if tenant.name == name:
            return tenant.settings(state_dir=loaded.settings.state_dir)
    known = ", ".join(t.name for t in tenants.tenants) or "none"
    raise GuardmailError(f"no tenant named {name!r} in {smtp_filter.tenants_dir} (known: {known})")


__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Subparsers",
    "load",
    "load_read_only",
    "refuse_tenant",
    "tenant_settings",
]
