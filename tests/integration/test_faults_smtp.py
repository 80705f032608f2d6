"""The SMTP content filter behind a real, private Postfix (after-queue), with the next hop
(Postfix's re-injection smtpd) misbehaving through a faulting proxy (tests/servers/faultproxy.py;
issue 23, "Resources and faults"): it answers 4xx to the end of DATA, hangs after DATA, or closes
the connection after DATA. The filter must answer Postfix 4xx (never 250 before the next hop took
the message) within its timeout; Postfix's retry then delivers every copy exactly once and the
offender's mail is archived once."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.test_smtp_filter_postfix import (
    ALICE,
    BOB,
    CLEAN,
    CONFIG,
    OFFENDER,
    USERS,
    body,
    evidence,
    lf,
    settle,
)
from tests.servers.faultproxy import Fault, FaultProxy
from tests.servers.postfix import Guardmail, Postfix, start_postfix

pytestmark = pytest.mark.integration

END_OF_DATA = b"\r\n.\r\n"  # the filter's end of DATA, on its way to the next hop
FAULTS = {
    "answers_4xx": Fault(
        action="reply", direction="up", pattern=END_OF_DATA, reply=b"452 4.3.1 Out of room\r\n"
    ),
    "hangs_after_data": Fault(action="stall", direction="up", pattern=END_OF_DATA),
    "closes_after_data": Fault(action="close", direction="up", pattern=END_OF_DATA),
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "tenants.d").mkdir()
    (tmp_path / "tenants.d" / "alice.yaml").write_text(ALICE)
    (tmp_path / "tenants.d" / "bob.yaml").write_text(BOB)
    return tmp_path


@pytest.fixture
def rig(root: Path) -> Iterator[tuple[Postfix, FaultProxy, Guardmail]]:
    postfix = start_postfix("after", USERS)
    proxy = FaultProxy(postfix.reinject_port)
    config = CONFIG.format(
        root=root, listen=postfix.filter_port, next_hop=proxy.port, mode="after_queue"
    ).replace("timeout_seconds: 30", "timeout_seconds: 2")
    (root / "guardmail.yaml").write_text(config)
    guardmail = Guardmail(root / "guardmail.yaml", root / "guardmail.log")
    try:
        guardmail.wait_listening()
        yield postfix, proxy, guardmail
    finally:
        guardmail.stop()
        proxy.stop()
        postfix.stop()


def deferred(postfix: Postfix, times: int) -> None:
    """Until Postfix logged ``times`` deferrals by the filter, the message still queued."""
    wait_for(
        lambda: postfix.log().count("451 4.3.0 Next hop unavailable") >= times,
        what=f"deferral {times}",
    )
    assert len(postfix.queue()) == 1


@pytest.mark.parametrize("case", FAULTS)
def test_a_next_hop_failing_after_data_defers_and_the_retry_delivers_each_copy_once(
    rig: tuple[Postfix, FaultProxy, Guardmail], root: Path, case: str
) -> None:
    postfix, proxy, guardmail = rig
    # Clean mail: the one transaction fails.
    proxy.arm(FAULTS[case])
    postfix.send(["user@example.test"], CLEAN, sender="friend@ok.example")
    proxy.wait_struck(1)
    deferred(postfix, 1)
    assert postfix.delivered("user@example.test") == []  # no 250 went out before the hop took it
    postfix.flush()
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 1, what="clean retried")
    settle(postfix)

    # Offender mail to a protected and an unprotected recipient: the quarantine copy goes
    # through, then the clean copy's transaction fails; the retry sends only what is missing.
    proxy.arm(dataclasses.replace(FAULTS[case], skip=1))
    postfix.send(["alice@example.test", "user@example.test"], OFFENDER, sender="ex@bad.example")
    proxy.wait_struck(2)
    deferred(postfix, 2)
    postfix.flush()
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 2, what="offender retried")
    settle(postfix)
    time.sleep(0.5)  # anything sent twice would have landed by now
    clean_copy, offender_copy = postfix.delivered("user@example.test")
    assert body(clean_copy) == lf(CLEAN) and body(offender_copy) == lf(OFFENDER)
    (quarantined,) = postfix.delivered("alice-quarantine@example.test")
    assert body(quarantined) == lf(OFFENDER)
    assert postfix.delivered("alice@example.test") == []
    ((entry, blob),) = evidence(root, "alice")  # archived at the first attempt, not again
    assert blob.endswith(OFFENDER) and entry["action"] == "quarantine"
    text = guardmail.log_text()
    assert text.count("smtp_filter.next_hop_failed") == 2 and "Traceback" not in text
    assert guardmail.proc.poll() is None


def test_a_next_hop_reply_lost_after_it_took_the_message_is_451_and_nothing_is_lost(
    rig: tuple[Postfix, FaultProxy, Guardmail],
) -> None:
    """The next hop queued the message but its 250 never arrived: the filter cannot know, so it
    answers 451 and Postfix's retry delivers a second copy. That is SMTP's own limit (RFC 1047;
    Postfix's smtp client does the same): at least once, never lost, never 250 unconfirmed."""
    postfix, proxy, guardmail = rig
    proxy.arm(Fault(action="close", pattern=b"250 2.0.0 Ok: queued"))
    postfix.send(["user@example.test"], CLEAN, sender="friend@ok.example")
    proxy.wait_struck(1)
    deferred(postfix, 1)
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 1, what="the hop's copy")
    postfix.flush()
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 2, what="the retry's copy")
    settle(postfix)
    assert [body(m) for m in postfix.delivered("user@example.test")] == [lf(CLEAN)] * 2
    assert guardmail.log_text().count("smtp_filter.next_hop_failed") == 1
