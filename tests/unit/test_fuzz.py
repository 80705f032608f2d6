"""A short fuzz run of every target in the suite (the long, coverage-guided one: bench/fuzz.py).

Inputs are random bytes and mutations of the hostile corpus; each target must return or raise
AssertionError only. A crash found by either run becomes a regression test beside the parser's
own tests.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import TARGETS
from tests.hostile.corpus import corpus

SEEDS = [h.raw[:8192] for h in corpus()]
# Structured seeds for the parsers that are not mail.
SEEDS += [
    b"* 1 EXISTS\r\n* 2 FETCH (FLAGS (\\Seen))\r\n",
    b"<message from='s@x/r' type='chat'><body>x</body></message>",
    b'{"op": "report", "raw": "RnJvbTogYUBiLmM=", "channel": "mail"}',
    b"From: a@b.example\r\n.\r\n..\r\n",
]


def mutations() -> st.SearchStrategy[bytes]:
    seed = st.sampled_from(SEEDS)
    return st.one_of(
        st.binary(max_size=2048),
        st.tuples(seed, st.integers(0, 4096), st.binary(max_size=64)).map(
            lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
        ),
        st.tuples(seed, st.integers(0, 4096), st.integers(0, 64)).map(
            lambda t: t[0][: t[1]] + t[0][t[1] + t[2] :]
        ),
    )


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_survives_random_and_mutated_input(name: str) -> None:
    target: Callable[[bytes], None] = TARGETS[name]

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutations())
    def run(data: bytes) -> None:
        target(data)

    run()
