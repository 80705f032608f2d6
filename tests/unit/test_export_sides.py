"""The report shows the person's side and group chats: a marker in the item table, the person's
own messages and a room's context in the chat transcript, and neither counted as the offender's."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from guardmail.core.item import Channel, Identity, Item, Summary, mail_item, mail_recipients
from guardmail.core.rules import Action, OffenderRule, RuleSet, Verdict
from guardmail.export.bundle import write_bundle
from guardmail.export.evidence import Criteria
from guardmail.export.selection import select
from guardmail.kept import INCOMING, OUTGOING, keep_many
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Vault

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
RULES = RuleSet(
    [OffenderRule(name="Sam", addresses=("sam@example.net",), display_names=("Shadow",))]
)
ROOM = "den@conference.example"


def chat(n: int, nick: str, text: str, minute: int) -> Item:
    raw = (
        f"<message from='{ROOM}/{nick}' to='jane@chat.example/g' type='groupchat' id='g{n}'>"
        f"<body>{text}</body></message>"
    ).encode()
    return Item(
        raw=raw,
        channel=Channel.XMPP,
        tenant="t",
        account="jane",
        source_ref=f"xmpp:jane:muc:{ROOM}:{n}",
        received_at=T0.replace(minute=minute),
        identities=(Identity(source="nick", display_name=nick),),
        summary=Summary(subject=text),
        meta=(("via", "groupchat"), ("from", f"{ROOM}/{nick}")),
        dedupe_scope="xmpp:jane",
    )


def test_report_marks_the_person_s_side_and_shows_a_room_s_context(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "db.sqlite3")
    try:
        vault = Vault(tmp_path / "vault", storage, "t")
        pipeline = Pipeline(vault=vault, rules=RULES, clock=lambda: T0)
        raw = (
            b"From: Jane <jane@home.example>\r\nTo: sam@example.net\r\n"
            b"Subject: leave me alone\r\nDate: Fri, 20 Nov 2026 08:00:00 +0000\r\n\r\nStop.\r\n"
        )
        sent = mail_item(raw, tenant="t", account="jane", source_ref="imap:s", received_at=T0)
        sent = replace(sent, identities=mail_recipients(raw))
        keep_many(pipeline, [sent], [pipeline.judge_recipients(sent)], direction=OUTGOING)
        offender = chat(2, "Shadow", "I see you in here", 5)
        (receipt,) = keep_many(
            pipeline,
            [offender],
            [pipeline.judge(offender)],
            direction=INCOMING,
            extra=[{"muc": {"room": ROOM, "nick": "Shadow", "real_jid": None}}],
        )
        context = [chat(1, "Pal", "morning all", 4), chat(3, "Pal", "leave her be", 6)]
        keep_many(
            pipeline,
            context,
            [Verdict(action=Action.PASS, decided_at=T0)] * 2,
            direction=INCOMING,
            extra=[{"muc": {"room": ROOM, "nick": "Pal", "context_of": receipt.seq}}] * 2,
        )
        evidence = select(vault.rows(), tenant="t", criteria=Criteria(offenders=("Sam",)))
        assert [(i.direction, i.room, i.context_of) for i in evidence.items] == [
            (OUTGOING, "", 0),
            (INCOMING, ROOM, 0),
            (INCOMING, ROOM, receipt.seq),
            (INCOMING, ROOM, receipt.seq),
        ]
        assert evidence.offenders == ("Sam",)
        out = write_bundle(vault, evidence, tmp_path / "bundle", now=T0, version="test").path
    finally:
        storage.close()
    html = (out / "report.html").read_text()
    assert "sent by the person" in html and "the person&#39;s own message, to Sam" in html
    assert f"group chat in {ROOM}" in html and "room context: a message around" in html
    pdf = subprocess.run(
        ["pdftotext", "-layout", str(out / "report.pdf"), "-"], capture_output=True, check=True
    ).stdout.decode()
    transcript = pdf[pdf.index("Chat transcript (instant messages") :]
    assert f"Group chat {ROOM}" in transcript
    lines = [ln for ln in transcript.splitlines() if "] (item " in ln][:3]
    assert "Pal" in lines[0] and "[offender: Sam]" in lines[1] and "Pal" in lines[2]
    # Per offender: one item of Sam's (the room message), not the person's nor the context.
    assert "<tr><td>Sam</td><td>1</td>" in html
