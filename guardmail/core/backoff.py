"""Reconnect delays: exponential backoff with jitter, as a pure function.

``delay(attempt, ...)`` grows as ``base * 2**attempt`` up to ``cap``, then is scaled by a factor
in [0.5, 1.0) taken from ``rand`` (the caller's random number in [0, 1)), so that many accounts
cut off at once by a server restart do not all reconnect in the same instant.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    base: float
    cap: float

    def delay(self, attempt: int, *, rand: float) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts failures so far, >= 0)."""
        raw = min(self.cap, self.base * 2.0 ** min(attempt, 32))
        return raw * (0.5 + 0.5 * min(max(rand, 0.0), 1.0))


# A network fault: retry soon, back off to five minutes.
NETWORK = Backoff(base=1.0, cap=300.0)
# A refused login or an untrusted certificate will not fix itself in a second; retrying fast
# would only lock the account (fail2ban, provider throttling). Back off to an hour.
REFUSED = Backoff(base=30.0, cap=3600.0)
# A session that lasted this long starts the backoff afresh. A shorter one does not, so that a
# server that accepts the login and then drops the connection at once (at the same message,
# every time) is retried with growing delays rather than every second forever.
STABLE_SECONDS = 60.0
