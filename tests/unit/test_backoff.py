"""Reconnect delays grow, are capped, and are spread by jitter."""

import pytest

from guardmail.core.backoff import NETWORK, REFUSED, Backoff


@pytest.mark.parametrize(
    ("backoff", "attempt", "rand", "expected"),
    [
        (NETWORK, 0, 0.999999, 1.0),
        (NETWORK, 0, 0.0, 0.5),
        (NETWORK, 3, 0.0, 4.0),
        (NETWORK, 20, 0.999999, 300.0),
        (NETWORK, 10_000, 0.0, 150.0),
        (REFUSED, 0, 0.0, 15.0),
        (REFUSED, 7, 0.999999, 3600.0),
        (Backoff(base=2.0, cap=10.0), 1, 0.5, 3.0),
    ],
)
def test_delay_doubles_up_to_the_cap_with_jitter(
    backoff: Backoff, attempt: int, rand: float, expected: float
) -> None:
    assert backoff.delay(attempt, rand=rand) == pytest.approx(expected, rel=1e-5)


def test_refused_logins_back_off_far_longer_than_network_faults() -> None:
    assert REFUSED.delay(0, rand=0.0) > NETWORK.delay(3, rand=0.999)
