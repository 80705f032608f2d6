"""The SMTP filter in this test's event loop, between smtplib (standing in for Postfix) and a
programmable next hop (aiosmtpd): per-recipient fates, replies, retries and evidence.
The real Postfix around it is in test_smtp_filter_postfix.py."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import shutil
import smtplib
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from guardmail.channels.smtp.filter import SmtpFilterSource
from guardmail.channels.smtp.relayed import RelayedCopies
from guardmail.config.offenders import OffenderConfig
from guardmail.config.settings import Settings
from guardmail.config.smtp_filter import SmtpFilterConfig
from guardmail.daemon.tenant import Tenant, open_tenant
from guardmail.daemon.tenants import MainRecipients, TenantDirectory
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault import journal
from tests.hostile.corpus import corpus
from tests.servers.ports import free_ports

pytestmark = pytest.mark.integration
T = TypeVar("T")

ALICE = """\
name: alice
recipients: [alice@example.test]
offenders:
  - name: Ex
    addresses: [ex@bad.example]
quarantine_mailbox: alice-quarantine@example.test
"""
BOB = """\
name: bob
recipients: ["@bob.example"]
offenders:
  - name: Ex too
    addresses: [ex@bad.example]
    action: block
"""
CAROL = """\
name: carol
recipients: [carol@example.test]
offenders:
  - name: Ex again
    domains: [bad.example]
    action: block
"""
OFFENDER = b"From: Ex <ex@bad.example>\r\nSubject: hi\r\n\r\nI know where you are.\r\n.dot\r\n"
CLEAN = b"From: friend@ok.example\r\nSubject: lunch\r\n\r\nTomorrow?\r\n"


@dataclass
class Got:
    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    data: bytes


@dataclass
class Hop:
    """The next hop: records what it accepts; replies can be set per recipient or for DATA."""

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str = ""
    received: list[Got] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        content = envelope.original_content or b""
        self.received.append(
            Got(str(envelope.mail_from), list(envelope.rcpt_tos), envelope.mail_options, content)
        )
        return "250 2.0.0 Ok: queued"

    def to(self, address: str) -> list[Got]:
        return [g for g in self.received if address in g.rcpt_tos]


@dataclass
class Rig:
    root: Path
    port: int
    hop: Hop
    hop_port: int
    source: SmtpFilterSource
    directory: TenantDirectory
    controller: Controller | None = None

    async def send(
        self,
        recipients: Sequence[str],
        raw: bytes,
        *,
        sender: str = "ex@bad.example",
        ident: str | None = "QID1",
        options: Sequence[str] = (),
    ) -> tuple[int, str]:
        """One transaction as Postfix's smtp client makes it; the filter's reply to DATA."""

        def send() -> tuple[int, str]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
                s.ehlo("mx.gmtest.test")
                if ident:
                    assert s.docmd("XFORWARD", "NAME=mail.bad.example ADDR=192.0.2.7")[0] == 250
                    assert s.docmd("XFORWARD", f"HELO=bad IDENT={ident} SOURCE=REMOTE")[0] == 250
                try:
                    s.sendmail(sender, list(recipients), raw, mail_options=list(options))
                except smtplib.SMTPDataError as exc:
                    error = exc.smtp_error
                    return exc.smtp_code, error.decode() if isinstance(error, bytes) else error
                except smtplib.SMTPRecipientsRefused as exc:
                    raise AssertionError(f"RCPT refused: {exc.recipients}") from None
                return 250, ""

        return await asyncio.to_thread(send)

    def evidence(self, tenant: str) -> list[dict[str, Any]]:
        routed = {
            r.name: r
            for a in ("alice@example.test", "x@bob.example", "carol@example.test")
            if (r := self.directory.route(a)) is not None
        }
        return [journal.entry(row) for row in routed[tenant].tenant.vault.rows(kind="archived")]

    def start_hop(self) -> None:
        self.controller = Controller(
            self.hop, hostname="127.0.0.1", port=self.hop_port, enable_SMTPUTF8=True
        )
        self.controller.start()

    def stop_hop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path,
    *,
    mode: Literal["after_queue", "before_queue"] = "after_queue",
    main: Tenant | None = None,
) -> AsyncIterator[Rig]:
    tenants_dir = tmp_path / "tenants.d"
    tenants_dir.mkdir()
    for name, text in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
        (tenants_dir / f"{name}.yaml").write_text(text)
    port, hop_port = free_ports(2)
    cfg = SmtpFilterConfig(
        listen=f"127.0.0.1:{port}",
        next_hop=f"127.0.0.1:{hop_port}",
        mode=mode,
        tenants_dir=tenants_dir,
        timeout_seconds=10,
    )
    tenants = TenantDirectory(directory=tenants_dir, state_dir=tmp_path / "var")
    storage = SQLiteStorage(tmp_path / "var" / "guardmail.sqlite3")
    source = SmtpFilterSource(
        cfg=cfg,
        tenants=tenants,
        relayed=RelayedCopies(storage, "default"),
        fallback=MainRecipients(tenant=main) if main is not None else None,
    )
    r = Rig(
        root=tmp_path, port=port, hop=Hop(), hop_port=hop_port, source=source, directory=tenants
    )
    r.start_hop()
    task = asyncio.create_task(source.run())
    for _ in range(200):
        if task.done() or await _listening(port):
            break
        await asyncio.sleep(0.01)
    try:
        yield r
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        source.close()
        storage.close()
        r.stop_hop()


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


def run(tmp_path: Path, scenario: Callable[[Rig], Any], **kwargs: Any) -> None:
    async def main() -> None:
        async with rig(tmp_path, **kwargs) as r:
            await scenario(r)

    asyncio.run(main())


def test_clean_mail_is_relayed_unchanged_with_its_envelope(tmp_path: Path) -> None:
    async def scenario(r: Rig) -> None:
        utf8 = "From: Zoë <zoë@exämple.test>\r\nSubject: Grüße\r\n\r\n.dot\r\n".encode()
        friend = "friend@ok.example"
        assert await r.send(["carol@example.test", "x@else.example"], CLEAN, sender=friend) == (
            250,
            "",
        )
        assert await r.send(
            ["alice@example.test"],
            utf8,
            sender="zoë@exämple.test",
            options=["BODY=8BITMIME", "SMTPUTF8"],
        ) == (250, "")
        assert await r.send(["alice@example.test"], b"bounce\r\n", sender="") == (250, "")
        first, second, bounce = r.hop.received
        assert (first.mail_from, first.rcpt_tos, first.data) == (
            friend,
            ["carol@example.test", "x@else.example"],
            CLEAN,
        )
        assert (second.mail_from, second.data) == ("zoë@exämple.test", utf8)
        assert "SMTPUTF8" in second.mail_options and "BODY=8BITMIME" in second.mail_options
        assert bounce.mail_from == "<>"
        assert r.evidence("alice") == r.evidence("carol") == []

    run(tmp_path, scenario)


def test_a_message_to_a_protected_and_an_unprotected_recipient_splits(tmp_path: Path) -> None:
    async def scenario(r: Rig) -> None:
        code, _ = await r.send(["alice@example.test", "friend@else.example"], OFFENDER)
        assert code == 250
        (clean,) = r.hop.to("friend@else.example")
        (quarantined,) = r.hop.to("alice-quarantine@example.test")
        assert (clean.mail_from, clean.rcpt_tos, clean.data) == (
            "ex@bad.example",
            ["friend@else.example"],
            OFFENDER,
        )
        # the quarantined copy: the very same bytes, from the null sender (nothing can bounce)
        assert (quarantined.mail_from, quarantined.rcpt_tos, quarantined.data) == (
            "<>",
            ["alice-quarantine@example.test"],
            OFFENDER,
        )
        assert r.hop.to("alice@example.test") == []
        (entry,) = r.evidence("alice")
        assert entry["offender"] == "Ex" and entry["action"] == "quarantine"
        assert entry["source_ref"] == "smtp:QID1"
        assert entry["meta"] == {
            "mail_from": "ex@bad.example",
            "rcpt_to": "alice@example.test",
            "queue_id": "QID1",
            "client": "mail.bad.example[192.0.2.7]",
            "helo": "bad",
            "mode": "after_queue",
        }
        blob = r.directory.route("alice@example.test")
        assert blob is not None and blob.tenant.vault.blobs.get(entry["sha256"]) == OFFENDER

    run(tmp_path, scenario)


def test_each_tenant_judges_and_archives_its_own_copy_once(tmp_path: Path) -> None:
    async def scenario(r: Rig) -> None:
        rcpts = ["alice@example.test", "a@bob.example", "b@bob.example", "carol@example.test"]
        assert (await r.send(rcpts, OFFENDER))[0] == 250
        assert [g.rcpt_tos for g in r.hop.received] == [["alice-quarantine@example.test"]]
        (alice,) = r.evidence("alice")
        (bob,) = r.evidence("bob")
        (carol,) = r.evidence("carol")
        assert (alice["offender"], bob["offender"], carol["offender"]) == (
            "Ex",
            "Ex too",
            "Ex again",
        )
        assert bob["action"] == "block" and bob["meta"]["rcpt_to"] == "a@bob.example, b@bob.example"
        assert carol["meta"]["rcpt_to"] == "carol@example.test"  # no other tenant's addresses
        vaults = {
            r.directory.route(a).tenant.vault.root.name  # type: ignore[union-attr]
            for a in ("alice@example.test", "x@bob.example", "carol@example.test")
        }
        assert vaults == {"alice", "bob", "carol"}

    run(tmp_path, scenario)


def test_a_retry_after_a_deferral_archives_and_delivers_nothing_twice(tmp_path: Path) -> None:
    async def scenario(r: Rig) -> None:
        r.hop.rcpt_replies["friend@else.example"] = "450 4.2.0 mailbox busy"
        rcpts = ["alice@example.test", "friend@else.example"]
        code, text = await r.send(rcpts, OFFENDER)
        assert (code, text) == (451, "4.3.0 Next hop unavailable, try again later")
        assert len(r.hop.to("alice-quarantine@example.test")) == 1
        assert r.hop.to("friend@else.example") == []  # all or nothing: reset before DATA
        del r.hop.rcpt_replies["friend@else.example"]
        assert (await r.send(rcpts, OFFENDER))[0] == 250  # Postfix's retry: same ID, same bytes
        assert len(r.hop.to("friend@else.example")) == 1
        assert len(r.hop.to("alice-quarantine@example.test")) == 1  # not delivered again
        assert len(r.evidence("alice")) == 1  # archived once
        assert (await r.send(rcpts, OFFENDER, ident="QID2"))[0] == 250  # a new message
        assert len(r.evidence("alice")) == 2

    run(tmp_path, scenario)


def test_a_vault_failure_is_451_and_nothing_is_delivered(tmp_path: Path) -> None:
    async def scenario(r: Rig) -> None:
        blobs = tmp_path / "var" / "vault" / "alice" / "blobs"
        blobs.parent.mkdir(parents=True, exist_ok=True)
        blobs.write_text("a file where the blob directory should be")
        rcpts = ["alice@example.test", "friend@else.example"]
        assert await r.send(rcpts, OFFENDER) == (
            451,
            "4.3.0 Evidence vault unavailable, try again later",
        )
        assert r.hop.received == []  # no clean copy either: the retry would duplicate it
        blobs.unlink()
        assert (await r.send(rcpts, OFFENDER))[0] == 250
        assert len(r.hop.received) == 2 and len(r.evidence("alice")) == 1

    run(tmp_path, scenario)


def test_a_tenants_clean_mail_is_relayed_while_its_journal_cannot_be_read(tmp_path: Path) -> None:
    # Clean mail never waits for the tenant's journal (nor for its lock behind an archive):
    # only mail the tenant's rules act on asks whether an earlier attempt handled it.
    async def scenario(r: Rig) -> None:
        db = sqlite3.connect(tmp_path / "var" / "guardmail.sqlite3")  # tenants.d's database
        try:
            db.execute("ALTER TABLE journal RENAME TO journal_away")
            friend = "friend@ok.example"
            assert await r.send(["alice@example.test"], CLEAN, sender=friend) == (250, "")
            assert [g.rcpt_tos for g in r.hop.received] == [["alice@example.test"]]
            assert await r.send(["alice@example.test"], OFFENDER, ident="QID2") == (
                451,
                "4.3.0 Evidence vault unavailable, try again later",
            )
            assert len(r.hop.received) == 1
            db.execute("ALTER TABLE journal_away RENAME TO journal")
        finally:
            db.close()
        assert (await r.send(["alice@example.test"], OFFENDER, ident="QID2"))[0] == 250
        assert len(r.evidence("alice")) == 1

    run(tmp_path, scenario)


def test_the_main_configs_offenders_archive_first_and_a_vault_failure_is_451(
    tmp_path: Path,
) -> None:
    offender = OffenderConfig(name="Main ex", addresses=["main-ex@worse.example"])
    main = open_tenant(Settings(state_dir=tmp_path / "var", tenant="main", offenders=[offender]))
    raw = OFFENDER.replace(b"Ex <ex@bad.example>", b"Main Ex <main-ex@worse.example>")
    rcpts = ["nobody@else.example", "alice@example.test"]  # no tenant's, alice's (not hers)
    sender = "main-ex@worse.example"

    async def scenario(r: Rig) -> None:
        blobs = tmp_path / "var" / "vault" / "main" / "blobs"
        shutil.rmtree(blobs, ignore_errors=True)  # created when first needed
        blobs.write_text("a file where the blob directory should be")
        assert await r.send(rcpts, raw, sender=sender) == (
            451,
            "4.3.0 Evidence vault unavailable, try again later",
        )
        assert r.hop.received == []  # alice's copy neither: the retry would duplicate it
        blobs.unlink()
        assert await r.send(rcpts, raw, sender=sender) == (250, "")
        assert await r.send(["nobody@else.example"], CLEAN, sender="friend@ok.example") == (250, "")
        assert [(g.rcpt_tos, g.data) for g in r.hop.received] == [
            (["alice@example.test"], raw),
            (["nobody@else.example"], CLEAN),
        ]
        (row,) = main.vault.rows(kind="archived")
        entry = journal.entry(row)
        assert (entry["offender"], entry["action"]) == ("Main ex", "quarantine")
        assert entry["meta"]["rcpt_to"] == "nobody@else.example"
        assert main.vault.blobs.get(str(row.sha256)) == raw  # the bytes from the wire
        assert r.evidence("alice") == []

    try:
        run(tmp_path, scenario, main=main)
    finally:
        main.close()


def test_every_reply_but_the_greeting_ehlo_and_354_carries_an_enhanced_status_code(
    tmp_path: Path,
) -> None:
    commands = [
        b"NOOP",
        b"HELO",
        b"MAIL FROM:<early@ok.example>",
        b"EHLO mx.gmtest.test",
        b"VRFY someone",
        b"HELP",
        b"DATA",
        b"RCPT TO:<a@else.example>",
        b"MAIL FROM:bad",
        b"MAIL FROM:<friend@ok.example> FOO=BAR",
        b"XFORWARD NAME",
        b"XFORWARD IDENT=QIDR",
        b"MAIL FROM:<friend@ok.example>",
        b"MAIL FROM:<again@ok.example>",
        b"XFORWARD NAME=x",
        b"RCPT TO:<refused@else.example>",
        b"DATA x",
        b"DATA",
        b"MAIL FROM:<friend@ok.example>",
        b"RCPT TO:<nobody@else.example>",
        b"DATA",
        b"FOO",
        b"RSET",
        b"QUIT",
    ]
    coded = re.compile(rb"^[245][0-9]{2} [245]\.[0-9]{1,3}\.[0-9]{1,3}( |$)")

    def session(port: int) -> list[tuple[bytes, list[bytes]]]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s, s.makefile("rb") as f:

            def reply() -> list[bytes]:
                lines = [f.readline().rstrip(b"\r\n")]
                while lines[-1][3:4] == b"-":
                    lines.append(f.readline().rstrip(b"\r\n"))
                return lines

            got = [(b"", reply())]
            for command in commands:
                s.sendall(command + b"\r\n")
                got.append((command, reply()))
                if command == b"DATA" and got[-1][1][-1].startswith(b"354"):
                    s.sendall(CLEAN + b".\r\n")
                    got.append((b"(end of data)", reply()))
            return got

    async def scenario(r: Rig) -> None:
        r.hop.rcpt_replies["refused@else.example"] = "550 no such user"
        got = await asyncio.to_thread(session, r.port)
        uncoded = [
            (command, lines[-1])
            for command, lines in got
            if not coded.match(lines[-1])
            and not lines[-1].startswith((b"220 ", b"354 "))
            and not (command.startswith((b"EHLO", b"HELO")) and lines[-1].startswith(b"250"))
        ]
        assert uncoded == []
        replies = dict((c, lines[-1][:3]) for c, lines in got)
        assert replies[b"EHLO mx.gmtest.test"] == b"250" and replies[b"FOO"] == b"500"
        ehlo = next(lines for c, lines in got if c.startswith(b"EHLO"))
        assert b"250-ENHANCEDSTATUSCODES" in ehlo
        ends = [lines[-1] for c, lines in got if c == b"(end of data)"]
        assert ends[0] == b"550 5.0.0 no such user"  # the next hop's refusal, passed on
        assert ends[1].startswith(b"250 2.0.0 Ok: 1 relayed")
        assert [g.rcpt_tos for g in r.hop.received] == [["nobody@else.example"]]

    run(tmp_path, scenario)


def test_next_hop_down_is_451_and_a_closed_pooled_connection_is_replaced(tmp_path: Path) -> None:
    async def scenario(r: Rig) -> None:
        assert (await r.send(["friend@else.example"], CLEAN, ident="A"))[0] == 250
        r.stop_hop()  # also closes the connection the filter keeps for reuse
        assert (await r.send(["friend@else.example"], CLEAN, ident="B"))[0] == 451
        r.start_hop()
        assert (await r.send(["friend@else.example"], CLEAN, ident="B"))[0] == 250
        r.stop_hop()
        r.start_hop()
        assert (await r.send(["friend@else.example"], CLEAN, ident="C"))[0] == 250
        assert len(r.hop.received) == 3

    run(tmp_path, scenario)


def test_permanent_refusals_bounce_clean_mail_but_never_offender_mail(tmp_path: Path) -> None:
    async def scenario(r: Rig) -> None:
        r.hop.rcpt_replies["gone@else.example"] = "550 5.1.1 no such user"
        assert await r.send(["gone@else.example"], CLEAN, sender="friend@ok.example") == (
            550,
            "5.1.1 no such user",
        )
        # offender mail after-queue: archived, the refusal logged, no bounce to the offender
        assert (await r.send(["alice@example.test", "gone@else.example"], OFFENDER))[0] == 250
        assert len(r.evidence("alice")) == 1
        # some refused, some not: one reply cannot say which, so Postfix keeps it all
        code, _ = await r.send(["gone@else.example", "ok@else.example"], CLEAN, ident="Q3")
        assert code == 451
        assert r.hop.to("ok@else.example") == []

    run(tmp_path, scenario)


def test_before_queue_refuses_with_550_only_when_every_recipient_blocks(tmp_path: Path) -> None:
    async def scenario(r: Rig) -> None:
        code, text = await r.send(["a@bob.example", "carol@example.test"], OFFENDER, ident=None)
        assert (code, text) == (550, "5.7.1 Message refused by the recipient's protection")
        assert r.hop.received == []
        (bob,) = r.evidence("bob")  # archived before the refusal
        assert bob["meta"]["mode"] == "before_queue" and "queue_id" not in bob["meta"]
        code, _ = await r.send(["a@bob.example", "friend@else.example"], OFFENDER, ident=None)
        assert code == 250
        assert [g.rcpt_tos for g in r.hop.received] == [["friend@else.example"]]
        assert len(r.evidence("bob")) == 2

    run(tmp_path, scenario, mode="before_queue")


def test_an_unexpected_error_is_451_never_a_bounce(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(r: Rig) -> None:
        routed = r.directory.route("alice@example.test")
        assert routed is not None

        async def broken(*args: object) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(routed.tenant.pipeline, "process", broken)
        assert await r.send(["alice@example.test"], OFFENDER) == (
            451,
            "4.3.0 Internal error in the content filter, try again later",
        )

    run(tmp_path, scenario)


def test_tenant_files_are_re_read_when_they_change(tmp_path: Path) -> None:
    async def scenario(r: Rig) -> None:
        assert (await r.send(["dave@example.test"], OFFENDER, ident="D1"))[0] == 250
        assert r.hop.to("dave@example.test")  # nobody's recipient: clean
        (tmp_path / "tenants.d" / "dave.yaml").write_text(
            "name: dave\nrecipients: [dave@example.test]\n"
            "offenders:\n  - {name: Ex, addresses: [ex@bad.example], action: block}\n"
        )
        for _ in range(100):
            if r.directory.route("dave@example.test") is not None:
                break
            await asyncio.sleep(0.05)
        assert (await r.send(["dave@example.test"], OFFENDER, ident="D2"))[0] == 250
        assert len(r.hop.to("dave@example.test")) == 1
        assert json.dumps(r.source.tenants.names) == '["alice", "bob", "carol", "dave"]'

    run(tmp_path, scenario)


def test_pipelined_commands_and_a_pipelined_quit_after_the_data_work(tmp_path: Path) -> None:
    async def scenario(r: Rig) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.port)

        async def replies(n: int) -> list[bytes]:
            got: list[bytes] = []
            while len(got) < n:
                line = await reader.readline()
                if line[3:4] != b"-":
                    got.append(line[:3])
            return got

        assert await replies(1) == [b"220"]
        writer.write(b"EHLO mx.gmtest.test\r\n")
        ehlo: list[bytes] = []
        while not ehlo or ehlo[-1][3:4] != b" ":
            ehlo.append(await reader.readline())
        assert b"250-PIPELINING\r\n" in ehlo
        writer.write(
            b"XFORWARD IDENT=P1\r\nMAIL FROM:<friend@ok.example> BODY=8BITMIME\r\n"
            b"RCPT TO:<a@else.example>\r\nRCPT TO:<b@else.example>\r\nDATA\r\n"
        )
        assert await replies(5) == [b"250", b"250", b"250", b"250", b"354"]
        writer.write(
            CLEAN + b".\r\nMAIL FROM:<friend@ok.example>\r\nRCPT TO:<c@else.example>\r\nDATA\r\n"
        )
        assert await replies(4) == [b"250", b"250", b"250", b"354"]
        writer.write(b"..x\r\n.\r\nQUIT\r\n")
        assert await replies(2) == [b"250", b"221"]
        writer.close()
        first, second = r.hop.received
        assert (first.rcpt_tos, first.data) == (["a@else.example", "b@else.example"], CLEAN)
        assert (second.rcpt_tos, second.data) == (["c@else.example"], b".x\r\n")

    run(tmp_path, scenario)


async def send_exactly(r: Rig, recipient: str, raw: bytes, ident: str) -> tuple[int, bytes]:
    """One transaction whose DATA carries ``raw`` unchanged but for dot-stuffing and a final CRLF
    if missing (smtplib's sendmail would also rewrite bare CR and LF into CRLF)."""

    def send() -> tuple[int, bytes]:
        data = raw if raw == b"" or raw.endswith(b"\r\n") else raw + b"\r\n"
        stuffed = (b"." if data.startswith(b".") else b"") + data.replace(b"\r\n.", b"\r\n..")
        with smtplib.SMTP("127.0.0.1", r.port, timeout=60) as s:
            s.ehlo("mx.gmtest.test")
            assert s.docmd("XFORWARD", f"IDENT={ident}")[0] == 250
            assert s.mail("friend@ok.example")[0] == 250
            assert s.rcpt(recipient)[0] == 250
            assert s.docmd("DATA")[0] == 354
            s.send(stuffed + b".\r\n")
            code, _ = s.getreply()
        return code, data

    return await asyncio.to_thread(send)


def test_hostile_mail_is_archived_exactly_or_relayed_untouched_never_deferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The next hop stands in for Postfix's re-injection smtpd, which takes long lines (it
    # splits them); aiosmtpd refuses lines over 1,001 octets with a 500.
    monkeypatch.setattr(SMTP, "line_length_limit", 4 << 20)
    messages = corpus(offender="ex@bad.example", friend="friend@ok.example")

    async def scenario(r: Rig) -> None:
        offender: list[bytes] = []
        clean: list[bytes] = []
        for n, m in enumerate(messages):
            code, sent = await send_exactly(r, "alice@example.test", m.raw, ident=f"HQ{n}")
            assert code == 250, m.name  # never 451: it would stay in Postfix's queue for days
            (offender if m.offender else clean).append(sent)
        assert [g.data for g in r.hop.to("alice@example.test")] == clean
        assert [g.data for g in r.hop.to("alice-quarantine@example.test")] == offender
        routed = r.directory.route("alice@example.test")
        assert routed is not None
        vault = routed.tenant.vault
        rows = vault.rows(kind="archived")
        assert [row.sha256 for row in rows] == [hashlib.sha256(raw).hexdigest() for raw in offender]
        assert [vault.blobs.get(str(row.sha256)) for row in rows] == offender

    run(tmp_path, scenario)
