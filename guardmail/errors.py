"""The one exception tree of guardmail.

    GuardmailError
     ├── ConfigError        the operator's input is wrong (config, offender files, CLI arguments)
     ├── SecretError        a password file or command named in the config cannot be read
     ├── PeerError          a server or client we talk to misbehaved
     │    ├── ConnectFailure connecting or logging in to a server failed (IMAP, XMPP)
     │    ├── SubmitError   sending the warning failed (``certain``: certainly not sent)
     │    ├── TimestampFailed a time-stamping authority was unreachable or its token is not good
     │    ├── NextHopUnavailable (channels/smtp/relay.py) Postfix's next hop cannot take mail
     │    ├── Lost, Refused (channels/xmpp/session.py) a session ended; a request was refused
     │    ├── TokenRefused, TokenUnavailable (oauth/tokens.py) an OAuth2 grant was refused
     │    │                 (sign in again) / no fresh access token now (retry)
     │    ├── LoginFailed   (oauth/flows.py) the sign-in of `guardmail login` did not complete
     │    ├── SliceError    (channels/xmpp/tee.py) a stream not well-formed XML, or over-long
     │    ├── ElementError  (channels/xmpp/elements.py) a stanza's bytes are not one element
     │    └── FramingError  (control/nativehost.py) a native-messaging frame is malformed
     ├── VaultUnavailable   the evidence vault cannot durably take an item right now
     ├── StateError         a file of the state directory is corrupt, tampered with or not ours
     ├── StorageUnavailable (storage/base.py) the database could not complete a transaction
     ├── ExportError        (export/__init__.py) evidence cannot be exported faithfully
     ├── BundleUnreadable   (export/__init__.py) an exported bundle cannot be read to verify
     ├── WarningRefused     (warner.py) the warning cannot be sent as configured
     ├── Deferred           (channels/smtp/filter.py) the filter answers 4xx; Postfix retries
     ├── UnreadableSource   (imports/__init__.py) a source to import is missing or of another kind
     ├── BadReport, ReportIncomplete (control/) a report cannot be taken, or only in part
     └── NoDaemon, Refused, DaemonRefused (control/, commands/report.py) the control socket
                            has no daemon, or the daemon answered a request with an error

Private to their module, never raised past it: ``_Shutdown`` (daemon/supervisor.py, ends the
TaskGroup) and ``_Stale`` (channels/smtp/relay.py, a reused connection went away). ``core/``
imports nothing outside core: its ``UnsafeValue`` is a ``ValueError`` the warner turns into
``WarningRefused``.

Anything else is a bug and propagates. Messages are sentences that carry the bad value.
"""

from __future__ import annotations

from dataclasses import dataclass


class GuardmailError(Exception):
    """Base of every error guardmail raises on purpose."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigIssue:
    """One problem in a configuration file, located for a human.

    ``path`` is the dotted key path (``offenders.0.patterns.1``); ``line`` and ``column`` are
    1-based and point at the offending key or value in ``file``.
    """

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {self.message}"


class ConfigError(GuardmailError):
    """The configuration cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues) or "invalid configuration")


class SecretError(GuardmailError):
    """A secret named in the config (password file, password command) cannot be read.

    The message names the file or command, never the secret.
    """


class PeerError(GuardmailError):
    """A server or client we talk to broke its protocol or refused us."""


class VaultUnavailable(GuardmailError):
    """The vault could not durably store an item; nothing destructive may happen to it."""


class StateError(GuardmailError):
    """A file guardmail keeps in its state directory cannot be used as it is: not an SQLite
    database, a HEAD witness that is not ``SEQ SHA256``, a journal column of the wrong type, a
    blob name that is not a SHA-256. The message names the file and what is wrong with it."""


class SubmitError(PeerError):
    """Sending the warning failed (SMTP submission or one XMPP message).

    ``certain``: the server certainly did not accept the message. The at-most-once ledger must
    never resend by itself after an outcome it cannot know, so "maybe sent" is ``certain=False``.
    """

    def __init__(self, message: str, *, certain: bool) -> None:
        super().__init__(message)
        self.certain = certain


class TimestampFailed(PeerError):
    """An RFC 3161 time-stamping authority could not be reached, refused, or answered with a
    token that does not check (wrong hash, untrusted certificate ...); the message says which."""


class ConnectFailure(PeerError):
    """Connecting or logging in failed; ``event`` names it for the log, ``refused`` for backoff.

    ``refused`` is true when retrying soon cannot help (wrong password, bad certificate): the
    source then backs off longer. ``reason`` is a sentence that never carries the secret.
    """

    def __init__(self, *, event: str, reason: str, refused: bool) -> None:
        super().__init__(reason)
        self.event = event
        self.reason = reason
        self.refused = refused
