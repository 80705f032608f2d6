"""Server certificates for tests: the usual one, one that has expired, one for another name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import trustme

Flaw = Literal["none", "expired", "wrong_name"]


def issue(ca: trustme.CA, *names: str, flaw: Flaw = "none") -> trustme.LeafCert:
    """A leaf certificate for ``names`` from ``ca``, with ``flaw`` if asked."""
    if flaw == "wrong_name":
        return ca.issue_cert("mail.elsewhere.example")
    if flaw == "expired":
        now = datetime.now(UTC)
        return ca.issue_cert(
            *names, not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
        )
    return ca.issue_cert(*names)
