"""The tokens of one account, kept in one file of the state directory.

Contracts:
- The file is 0600 in a 0700 directory, written to a temporary file, fsync'd and renamed (a
  crash leaves the old tokens or the new ones, never half of each).
- ``locked`` serialises every refresh of one account across threads (one IMAP connection per
  folder) and processes (the daemon and ``guardmail login``): providers that rotate refresh
  tokens invalidate the old one at the first use, so two refreshes at once would lose it.
- Tokens never reach a message: errors name the file only.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardmail.errors import StateError

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True, slots=True, kw_only=True)
class Tokens:
    """What the token endpoint gave, as kept."""

    access_token: str
    """The bearer token sent in SASL (short-lived)."""
    refresh_token: str
    """The long-lived grant; losing it means `guardmail login` again."""
    expires_at: float
    """Unix time the access token expires (0: unknown, treated as expired)."""
    scope: str = ""

    def __repr__(self) -> str:  # never show a token, e.g. in a traceback's locals
        return f"Tokens(expires_at={self.expires_at}, scope={self.scope!r})"


def tokens_from_response(
    data: dict[str, Any], *, now: float, previous: Tokens | None = None
) -> Tokens:
    """Tokens from a token endpoint's JSON answer (RFC 6749 5.1). A refresh answer without a
    new refresh_token keeps the previous one (RFC 6749 6)."""
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise ValueError("the token endpoint's answer has no access_token")
    refresh = data.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        if previous is None:
            raise ValueError(
                "the token endpoint gave no refresh_token (ask for the offline_access scope "
                "where the provider needs it)"
            )
        refresh = previous.refresh_token
    expires_in = data.get("expires_in")
    try:
        lifetime = float(expires_in) if expires_in is not None else 3600.0
    except (TypeError, ValueError):
        lifetime = 0.0
    scope = data.get("scope")
    return Tokens(
        access_token=access,
        refresh_token=refresh,
        expires_at=now + max(lifetime, 0.0),
        scope=scope if isinstance(scope, str) else (previous.scope if previous else ""),
    )


class TokenStore:
    """One account's token file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Tokens | None:
        """The stored tokens, None when there are none yet; StateError when unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"token file {self.path} cannot be read: {exc.strerror}") from None
        try:
            data = json.loads(raw)
            return Tokens(
                access_token=str(data["access_token"]),
                refresh_token=str(data["refresh_token"]),
                expires_at=float(data["expires_at"]),
                scope=str(data.get("scope", "")),
            )
        except (ValueError, KeyError, TypeError):
            raise StateError(
                f"token file {self.path} is not a guardmail token file; "
                "run `guardmail login` for this account again"
            ) from None

    def save(self, tokens: Tokens) -> None:
        """Replace the stored tokens durably (0600, atomic)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = json.dumps(
            {
                "access_token": tokens.access_token,
                "refresh_token": tokens.refresh_token,
                "expires_at": tokens.expires_at,
                "scope": tokens.scope,
            }
        ).encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this account's refresh lock (threads of this process, then other processes)."""
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault(self.path, threading.Lock())
        with lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock_file = self.path.with_name(f".{self.path.name}.lock")
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)
