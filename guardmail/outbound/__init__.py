"""Sending the one warning: SMTP submission (smtp.py) or one XMPP message (xmpp.py).

Both tell apart "certainly not sent" from "maybe sent" (``SubmitError.certain``): the at-most-once
ledger must never resend by itself after an outcome it cannot know.
"""

from __future__ import annotations

from guardmail.errors import PeerError


class SubmitError(PeerError):
    """Sending failed. ``certain``: the server certainly did not accept the message."""

    def __init__(self, message: str, *, certain: bool) -> None:
        super().__init__(message)
        self.certain = certain
