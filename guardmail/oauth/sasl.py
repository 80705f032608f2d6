"""The initial client responses of SASL XOAUTH2 and OAUTHBEARER (RFC 7628), before base64.

XOAUTH2 is Google's and Microsoft's ``user=U^Aauth=Bearer T^A^A``; OAUTHBEARER puts a GS2 header
before the same key-value pairs (``n,a=U,^Aauth=Bearer T^A^A``), with ``,`` and ``=`` in the
user name escaped as ``=2C`` and ``=3D`` (RFC 5801 section 4).
"""

from __future__ import annotations

from typing import Literal


def initial_response(
    mechanism: Literal["xoauth2", "oauthbearer"],
    user: str,
    token: str,
    *,
    vendor: str | None = None,
) -> bytes:
    if any(c in user or c in token for c in "\x01\r\n"):
        raise ValueError("a user name or token with control characters cannot go in SASL")
    if mechanism == "xoauth2":
        text = f"user={user}\x01auth=Bearer {token}\x01"
        if vendor:
            text += f"vendor={vendor}\x01"
        return (text + "\x01").encode()
    gs2 = "n,a=" + user.replace("=", "=3D").replace(",", "=2C") + ","
    return f"{gs2}\x01auth=Bearer {token}\x01\x01".encode()
