"""The milter codec (pure) and the milter's end-of-message answer, table by table."""

from __future__ import annotations

import asyncio
import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from guardmail.channels.smtp import milter_codec as mc
from guardmail.channels.smtp.milter import CHANGED, MilterSource
from guardmail.channels.smtp.milter_answer import REFUSED, Group, answer
from guardmail.config.smtp_filter import SmtpFilterConfig
from guardmail.core.item import Item
from guardmail.core.rules import Action, Verdict
from guardmail.pipeline import Pipeline
from guardmail.pipeline_batch import Outcome

# What Postfix 3.7 offers (read from a real one): version 6, every action, every step flag.
POSTFIX_OFFER = struct.pack("!LLL", 6, 0x1FF, 0x1FFFFF)


def split(stream: bytes) -> list[tuple[int, bytes]]:
    """The (command, data) packets of a stream of replies."""
    return [(p.command, p.data) for p in mc.Decoder().feed(stream)]


def test_packets_split_anywhere_come_out_whole_and_in_order() -> None:
    stream = mc.packet(mc.MAIL, b"<a@b>\0SIZE=9\0") + mc.packet(mc.BODY, b"x" * 70000)
    for cut in (1, 3, 4, 5, 17, len(stream) - 1):
        decoder = mc.Decoder()
        packets = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert [(p.command, p.data) for p in packets] == [
            (mc.MAIL, b"<a@b>\0SIZE=9\0"),
            (mc.BODY, b"x" * 70000),
        ]


@pytest.mark.parametrize("size", [0, mc.MAX_PACKET + 1])
def test_a_packet_of_no_or_too_many_octets_is_a_protocol_violation(size: int) -> None:
    with pytest.raises(mc.ProtocolViolation, match="milter packet of"):
        mc.Decoder().feed(struct.pack("!L", size) + b"B")


def test_negotiation_asks_only_for_what_the_mta_offers() -> None:
    options, reply = mc.negotiate(POSTFIX_OFFER)
    ((command, data),) = split(reply)
    assert command == mc.OPTNEG
    # Postfix offers SMFIR_ADDRCPT_PAR: a quarantine copy is added with NOTIFY=NEVER.
    wanted = mc.F_ADDRCPT | mc.F_DELRCPT | mc.F_ADDRCPT_PAR
    assert struct.unpack("!LLL", data) == (6, wanted, mc.WANTED_PROTOCOL)
    without_par = struct.pack("!LLL", 6, 0x1FF & ~mc.F_ADDRCPT_PAR, 0x1FFFFF)
    assert mc.negotiate(without_par)[0].actions == mc.F_ADDRCPT | mc.F_DELRCPT
    # Only the end of the message is answered.
    steps = (mc.HELO, mc.MAIL, mc.RCPT, mc.HEADER, mc.EOH, mc.BODY)
    assert [c for c in steps if options.answered(c)] == []
    # HELO is asked for (its name is kept with the evidence), unanswered: SMFIP_NR_HELO 0x2000.
    assert not options.protocol & mc.P_NOHELO and options.protocol & 0x2000
    no_nr = struct.pack("!LLL", 6, 0x1FF, mc.P_HDR_LEADSPC)
    older, _ = mc.negotiate(no_nr)
    assert all(older.answered(c) for c in steps)
    assert not older.answered(mc.MACRO) and not older.answered(mc.ABORT)


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        (struct.pack("!LLL", 6, mc.F_ADDRCPT, 0x1FFFFF), "adding and removing recipients"),
        (struct.pack("!LLL", 6, 0x1FF, 0xFFFFF), "SMFIP_HDR_LEADSPC"),
        (b"\0\0\0\6", "OPTNEG of 4 octets"),
    ],
)
def test_an_mta_that_cannot_give_what_we_need_is_refused(offer: bytes, message: str) -> None:
    with pytest.raises(mc.ProtocolViolation, match=message):
        mc.negotiate(offer)


def test_the_message_is_rebuilt_with_crlf_folding_and_the_exact_leading_space() -> None:
    message = mc.Message()
    for header in (
        b"From\0 a@x\0",
        b"X-Folded\0 one\n\ttwo\n  three\0",
        b"X-NoSpace\0v\0",
        b"X-Tab\0\tv  \0",
        b"X-Empty\0\0",
    ):
        message.header(header)
    message.chunk(b"body\r\n\xc3\xa4")
    message.chunk(b"y\r\n")
    assert message.raw() == (
        b"From: a@x\r\nX-Folded: one\r\n\ttwo\r\n  three\r\nX-NoSpace:v\r\nX-Tab:\tv  \r\n"
        b"X-Empty:\r\n\r\nbody\r\n\xc3\xa4y\r\n"
    )
    assert mc.Message().raw() == b"\r\n"


def test_macros_and_strings_stay_bytes_even_when_not_ascii() -> None:
    assert mc.macros(b"Mi\0ABC\0{mail_addr}\0\xc3\xa4@x\0") == {
        b"i": b"ABC",
        b"{mail_addr}": b"\xc3\xa4@x",
    }
    assert mc.cstrings(b"<a@b>\0SIZE=1\0") == [b"<a@b>", b"SIZE=1"]
    assert mc.cstrings(b"<a@b>") == [b"<a@b>"]
    assert mc.unbracket(b"<>") == b"" and mc.unbracket(b" <a@b> ") == b"a@b"


def test_a_reply_code_escapes_percent_signs() -> None:
    ((command, data),) = split(mc.reply_code("451 4.3.0 100% full"))
    assert (command, data) == (mc.R_REPLYCODE, b"451 4.3.0 100%% full\0")


@dataclass(frozen=True)
class _Tenant:
    name: str
    quarantine_mailbox: str | None

    @property
    def pipeline(self) -> Pipeline:
        raise AssertionError("not used by answer()")


ALICE = Group(routed=_Tenant("alice", "q@x"), recipients=[b"<alice@x>"])
BOB = Group(routed=_Tenant("bob", None), recipients=[b"<bob@x>", b"<bob2@x>"])
DEL, ADD = mc.R_DELRCPT, mc.R_ADDRCPT
CONT = (mc.R_CONTINUE, b"")


@pytest.mark.parametrize(
    ("outcomes", "clean", "expected"),
    [
        ([(ALICE, Action.PASS)], [], [CONT]),
        ([], [b"<u@x>"], [CONT]),
        ([(BOB, Action.BLOCK)], [], [(mc.R_REPLYCODE, REFUSED.encode() + b"\0")]),
        ([(BOB, Action.QUARANTINE)], [], [(mc.R_DISCARD, b"")]),
        (
            [(BOB, Action.BLOCK)],
            [b"<u@x>"],
            [(DEL, b"<bob@x>\0"), (DEL, b"<bob2@x>\0"), CONT],
        ),
        ([(ALICE, Action.QUARANTINE)], [], [(DEL, b"<alice@x>\0"), (ADD, b"<q@x>\0"), CONT]),
        ([(ALICE, Action.BLOCK)], [], [(mc.R_REPLYCODE, REFUSED.encode() + b"\0")]),
        (
            [(ALICE, Action.QUARANTINE), (BOB, Action.BLOCK)],
            [],
            [
                (DEL, b"<alice@x>\0"),
                (DEL, b"<bob@x>\0"),
                (DEL, b"<bob2@x>\0"),
                (ADD, b"<q@x>\0"),
                CONT,
            ],
        ),
        ([(ALICE, Action.BLOCK), (BOB, Action.QUARANTINE)], [], [(mc.R_DISCARD, b"")]),
    ],
)
def test_the_answer_removes_protected_recipients_or_refuses_or_discards(
    outcomes: list[tuple[Group, Action]], clean: list[bytes], expected: list[tuple[int, bytes]]
) -> None:
    assert split(answer(outcomes, clean)) == expected


def test_with_addrcpt_par_a_quarantine_mailbox_is_added_with_notify_never() -> None:
    outcomes = [(ALICE, Action.QUARANTINE)]
    assert split(answer(outcomes, [b"<u@x>"], notify_never=True)) == [
        (DEL, b"<alice@x>\0"),
        (mc.R_ADDRCPT_PAR, b"<q@x>\0NOTIFY=NEVER\0"),
        CONT,
    ]


def test_a_body_not_kept_is_counted_and_marked() -> None:
    message = mc.Message(keep_body=False)
    message.header(b"From\0 a@x\0")
    message.chunk(b"body\r\n")
    assert (message.body, message.body_dropped, message.size) == ([], True, 17)


class _OneTenant:
    """Routes every recipient to one tenant: as if tenants.d protected them after the envelope."""

    names = ("alice",)

    def route(self, recipient: str) -> _Tenant:
        return _Tenant("alice", None)

    def tenant(self, name: str) -> _Tenant | None:
        return _Tenant("alice", None) if name == "alice" else None

    def reload(self) -> bool:
        return True

    async def watch(self) -> None:
        return None

    def close(self) -> None:
        return None


def test_a_recipient_protected_after_its_body_was_dropped_is_retried_whole() -> None:
    source = MilterSource(
        cfg=SmtpFilterConfig(mode="milter", listen="unix:/nonexistent/m.sock"),
        tenants=_OneTenant(),
    )
    message = mc.Message(recipients=[b"<alice@x>"], keep_body=False)
    message.chunk(b"the part that was not kept\r\n")
    reply = asyncio.run(source.end_of_message(message))
    assert split(reply) == [(mc.R_REPLYCODE, CHANGED.encode() + b"\0")]


class _Vault:
    """The journal of one tenant, as ``_handled_before`` reads it: (sha256, scope) -> action."""

    def __init__(self) -> None:
        self.acted_entries: dict[tuple[str, str], str] = {}
        self.looked_up = 0

    def acted(self, sha256: str, scope: str) -> str | None:
        self.looked_up += 1
        return self.acted_entries.get((sha256, scope))


class _SlowPipeline:
    """Blocks every message; its archive and action entry are durable only when ``release``d."""

    def __init__(self) -> None:
        self.vault = _Vault()
        self.processed = 0
        self.release = asyncio.Event()

    def judge(self, item: object) -> Verdict:
        return Verdict(action=Action.BLOCK, decided_at=datetime.now(UTC))

    async def process(self, item: Item, actor: object) -> Outcome:
        self.processed += 1
        await self.release.wait()
        sha = hashlib.sha256(item.raw).hexdigest()
        self.vault.acted_entries[(sha, str(item.dedupe_scope))] = Action.BLOCK.value
        return Outcome(verdict=self.judge(item))


@dataclass(frozen=True)
class _Blocking:
    name: str
    pipeline: _SlowPipeline
    quarantine_mailbox: str | None = None


class _BlockingTenants(_OneTenant):
    def __init__(self, routed: _Blocking) -> None:
        self.routed = routed

    def route(self, recipient: str) -> _Blocking:  # type: ignore[override]
        return self.routed


def test_two_attempts_at_the_same_bytes_at_once_journal_one_action() -> None:
    """The tenant's lock: a retry arriving while the first attempt waits for its archive finds
    that attempt's action once it is its turn, and is answered the same without a second one."""

    async def run() -> tuple[int, list[bytes]]:
        pipeline = _SlowPipeline()
        source = MilterSource(
            cfg=SmtpFilterConfig(mode="milter", listen="unix:/nonexistent/m.sock"),
            tenants=_BlockingTenants(_Blocking("alice", pipeline)),  # type: ignore[arg-type]
        )

        def attempt(queue_id: bytes) -> mc.Message:
            message = mc.Message(sender=b"<ex@bad.example>", recipients=[b"<alice@x>"])
            message.header(b"From\0ex@bad.example\0")
            message.chunk(b"the same bytes\r\n")
            message.macros = {b"i": queue_id}
            return message

        first = asyncio.ensure_future(source.end_of_message(attempt(b"Q1")))
        retry = asyncio.ensure_future(source.end_of_message(attempt(b"Q2")))
        # Let both run as far as they can: without the lock, the retry's look-up (in a thread)
        # finds nothing while the first waits for its archive. With it, the retry waits.
        for _ in range(400):
            if pipeline.vault.looked_up >= 2:
                break
            await asyncio.sleep(0.005)
        pipeline.release.set()
        return pipeline.processed, list(await asyncio.gather(first, retry))

    processed, replies = asyncio.run(run())
    assert processed == 1
    refused = [(mc.R_REPLYCODE, REFUSED.encode() + b"\0")]
    assert [split(r) for r in replies] == [refused, refused]
