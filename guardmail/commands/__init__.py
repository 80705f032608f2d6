"""The ``guardmail`` subcommands, one module per group.

Each module has ``register(sub)``, which adds its parsers with ``set_defaults(handler=...)``;
a handler takes the parsed arguments and returns the exit code. ``guardmail.cli`` lists the
modules; a new command group is a new module plus one line there.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from guardmail.settings import LoadedConfig, load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# argparse's type for what add_subparsers() returns (generic for type checkers only).
if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction


def load(args: argparse.Namespace) -> LoadedConfig:
    """The configuration named by ``-c``; ConfigError propagates to ``cli.main`` (exit 2)."""
    return load_config(Path(args.config))


__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "Subparsers", "load"]
