"""The bounds of one message's DKIM/ARC check (``guardmail.vault.dkimcheck``), on their own.

Here rather than in ``dkimcheck`` so that a daemon can build its tenants' checkers without
importing dkimpy and dnspython (~20 MB) before the first archived message needs them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    signatures: int = 8
    arc_sets: int = 8
    lookup_seconds: float = 2.0
    dns_budget: float = 5.0
    seconds: float = 10.0
    max_bytes: int = 64 * 1024 * 1024


DEFAULT_LIMITS = Limits()
