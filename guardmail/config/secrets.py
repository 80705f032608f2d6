"""Reading the secrets a config names (password files and commands), never logging them.

A password command's arguments may carry a secret themselves (a token, a vault path): errors
name the command by its program only (the base name of argv[0]), never its arguments, its
output or the exception text of the run (which quotes the whole argv).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from guardmail.errors import SecretError

COMMAND_TIMEOUT = 30.0


def program_name(command: Sequence[str]) -> str:
    """How errors and logs name a password command: its program, without path or arguments."""
    return (os.path.basename(command[0]) or "?") if command else "?"


def read_secret(
    *,
    file: Path | None = None,
    command: Sequence[str] | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> str:
    """The first line of ``file``, or of what ``command`` prints; SecretError if unreadable."""
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise SecretError(f"cannot read password file {file}: {why}") from None
        origin = f"password file {file}"
    elif command is not None:
        origin = f"password command {program_name(command)!r}"
        if not command:
            raise SecretError("the password command is empty")
        try:
            done = subprocess.run(
                list(command),
                capture_output=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise SecretError(f"{origin} did not finish within {timeout:g}s") from None
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in an argument
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else None
            raise SecretError(f"{origin} could not be run: {why or type(exc).__name__}") from None
        if done.returncode != 0:
            raise SecretError(f"{origin} exited with status {done.returncode}")
        text = done.stdout.decode("utf-8", "replace")
    else:
        raise SecretError("no password file or command configured")
    secret = text.splitlines()[0] if text else ""
    if not secret:
        raise SecretError(f"{origin} gave an empty password")
    return secret
