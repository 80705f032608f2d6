"""A fixed vault for the report tests: two offenders, mail and XMPP, a warning, an earlier export.

"Sam Stalker" is the offender the report is for; "Olga Other" is someone else, whose address,
name and subject must appear nowhere in Sam's bundle (OTHER_MARKS). Times are fixed, so the
report's text is the same on every run (the golden tests compare it).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from guardmail.core.item import Channel, Identity, Item, mail_item
from guardmail.core.rules import OffenderRule, RuleSet, decide
from guardmail.export.bundle import write_bundle
from guardmail.export.evidence import Criteria
from guardmail.export.selection import select
from guardmail.pipeline_evidence import evidence_metadata
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.notes import add_note
from guardmail.vault.store import Vault

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SAM, OLGA = "Sam Stalker", "Olga Other"
OTHER_MARKS = (
    "Olga",
    "olga",
    "other@elsewhere.example",
    "elsewhere",
    "Secret plans",
    "olga-secret-body",
    "olga@chat.elsewhere.example",
    "Other",
)

RULES = RuleSet(
    [
        OffenderRule(name=SAM, addresses=("stalker@example.net",), jids=("sam@chat.example",)),
        OffenderRule(
            name=OLGA,
            addresses=("other@elsewhere.example",),
            jids=("olga@chat.elsewhere.example",),
        ),
    ]
)

LETTER = b"%PDF-1.4 a letter from the police\n"
# A real 32 x 20 PNG (shown as a thumbnail), and the same cut short (listed only).
PHOTO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAACAAAAAUCAIAAABj86gYAAAAc0lEQVR4nGM8cec/Ay0BE01NH7Vg1AKqABZkzjcL"
    "UaoYynXiNZw99INoGFvg9OaN05s3xBiBXyV2C+AaCNpBUCUWC9CU4rGDGJUo+QCaflUY0RQhp2sUQIRKLD5Aq4Lw"
    "1EjEqMQeB3ClBOs7gioZaV1lAgCCdzxCoBh2wQAAAABJRU5ErkJggg=="
)
BROKEN = PHOTO[:60]
FIRST = (
    b"From: =?utf-8?b?" + base64.b64encode("Säm Stälker".encode()) + b"?= <stalker@example.net>\r\n"
    b"To: Jane Doe <jane@home.example>\r\n"
    b"Subject: =?utf-8?q?Ich_wei=C3=9F_wo_du_wohnst?=\r\n"
    b"Date: Sun, 01 Nov 2026 22:15:00 +0100\r\n"
    b"Message-ID: <s1@example.net>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
    b"--alt\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"I know where you live. I saw your car on M=C3=BChlenweg.\r\n"
    b"--alt\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    b"<p>I know where you live.</p>\r\n"
    b"--alt--\r\n"
    b"--outer\r\n"
    b'Content-Type: image/png; name="car.png"\r\n'
    b'Content-Disposition: attachment; filename="car.png"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(PHOTO) + b"\r\n"
    b"--outer\r\n"
    b'Content-Type: image/png; name="broken.png"\r\n'
    b'Content-Disposition: attachment; filename="broken.png"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(BROKEN) + b"\r\n"
    b"--outer--\r\n"
)
OTHER_MAIL = (
    b"From: Olga Other <other@elsewhere.example>\r\nTo: jane@home.example\r\n"
    b"Subject: Secret plans of Olga\r\nDate: Mon, 02 Nov 2026 08:00:00 +0000\r\n\r\n"
    b"olga-secret-body\r\n"
)
WARNING = (
    b"From: Jane Doe <jane@home.example>\r\nTo: stalker@example.net\r\n"
    b"Subject: Stop contacting me\r\nMessage-ID: <warn1@home.example>\r\n"
    b"Date: Tue, 03 Nov 2026 12:00:00 +0000\r\n\r\n"
    b"Do not contact me again.\r\nAny further message goes to the police.\r\n"
)
LOOKALIKE = (
    "From: Sam <st\u0430lker@example.net>\r\nTo: jane@home.example\r\n"
    "Subject: you cannot block me\r\nDate: Wed, 04 Nov 2026 23:59:00 +0000\r\n"
    "Content-Type: text/html; charset=utf-8\r\n\r\n"
    "<html><script>alert('x')</script><p>New address, same me.</p><p>Answer me.</p></html>\r\n"
).encode()
SAM_CHAT = (
    b"<message from='sam@chat.example/phone' to='jane@home.example' type='chat' id='c1'>"
    b"<body>Why don't you answer?</body></message>"
)
OTHER_CHAT = (
    b"<message from='olga@chat.elsewhere.example/pc' to='jane@home.example' type='chat'>"
    b"<body>Secret plans of Olga, by chat</body></message>"
)
LAST = (
    b"From: stalker@example.net\r\nTo: jane@home.example\r\nSubject: last chance\r\n"
    b"Date: Fri, 06 Nov 2026 07:00:00 +0000\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.b64encode(b"You will regret this.\r\n")
    + b"\r\n"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportCase:
    root: Path
    vault: Vault
    storage: SQLiteStorage


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def _archive(vault: Vault, item: Item) -> None:
    verdict = decide(item.identities, RULES, now=item.received_at)
    assert verdict.primary is not None, item.raw[:80]
    receipt = vault.put(
        item.raw,
        source_ref=item.source_ref,
        metadata=evidence_metadata(item, verdict),
        now=item.received_at,
    )
    vault.record(
        "action",
        {"archived_seq": receipt.seq, "action": str(verdict.action), "done": "moved to Junk"},
        now=item.received_at,
        sha256=receipt.sha256,
        source_ref=item.source_ref,
    )


def _mail(raw: bytes, n: int, when: datetime) -> Item:
    return mail_item(raw, tenant="jane", account="home", source_ref=f"INBOX/{n}", received_at=when)


def _chat(raw: bytes, n: int, when: datetime, jid: str) -> Item:
    return Item(
        raw=raw,
        channel=Channel.XMPP,
        tenant="jane",
        account="chat",
        source_ref=f"xmpp/{n}",
        received_at=when,
        identities=(Identity(source="jid", address=jid),),
    )


def _warning(vault: Vault, when: datetime) -> None:
    sha = hashlib.sha256(WARNING).hexdigest()
    vault.blobs.put(WARNING, sha)
    vault.record(
        "warning",
        {
            "offender": SAM,
            "to": "stalker@example.net",
            "sent_at": when.isoformat(),
            "message_id": "<warn1@home.example>",
        },
        now=when,
        sha256=sha,
    )


def _abuse_report(vault: Vault, offender: str, to: str, when: datetime) -> None:
    raw = f"To: {to}\r\nSubject: abuse report about {offender}\r\n\r\n".encode()
    sha = hashlib.sha256(raw).hexdigest()
    vault.blobs.put(raw, sha)
    fields = {"offender": offender, "to": to, "from": "jane@home.example", "server_reply": "250"}
    vault.record("abuse_report", {**fields, "subject": f"abuse: {offender}"}, now=when, sha256=sha)


def make_report_case(root: Path) -> ReportCase:
    storage = SQLiteStorage(root / "state" / "guardmail.sqlite3")
    vault = Vault(root / "state" / "vault" / "jane", storage, "jane")
    # Found on the first scan: received a day after it was sent.
    _archive(vault, _mail(FIRST, 1, _at(2, 9, 30)))
    _archive(vault, _mail(OTHER_MAIL, 2, _at(2, 10)))
    _warning(vault, _at(3, 12))
    add_note(
        vault,
        "Called Springfield police, report 2026-1234, Officer Diaz.\nThey asked for the messages.",
        files=[("letter from police.pdf", LETTER)],
        now=_at(4, 10),
    )
    add_note(vault, "Olga's sister phoned about Olga.", files=[], offender=OLGA, now=_at(4, 11))
    _archive(vault, _mail(LOOKALIKE, 3, _at(5, 0, 1)))
    _archive(vault, _chat(SAM_CHAT, 4, _at(5, 18), "sam@chat.example"))
    _archive(vault, _chat(OTHER_CHAT, 5, _at(5, 19), "olga@chat.elsewhere.example"))
    # An earlier export for Olga alone: its journal entry names her.
    olga = select(vault.rows(), tenant="jane", criteria=Criteria(offenders=(OLGA,)))
    write_bundle(vault, olga, root / "olga-bundle", now=_at(5, 20), version="9.9")
    _archive(vault, _mail(LAST, 6, _at(6, 7, 5)))
    _abuse_report(vault, SAM, "abuse@example.net", _at(6, 9))
    _abuse_report(vault, OLGA, "abuse@elsewhere.example", _at(6, 10))
    # Sent by hand from the person's mail program, then noted in the case journal.
    add_note(
        vault,
        "Sent the bundle's abuse report to the chat server.",
        files=[],
        offender=SAM,
        kind="abuse-report",
        to="abuse@chat.example",
        now=_at(6, 11),
    )
    add_note(
        vault,
        "Reported Olga's chat account.",
        files=[],
        offender=OLGA,
        kind="abuse-report",
        to="abuse@chat.elsewhere.example",
        now=_at(6, 12),
    )
    return ReportCase(root=root, vault=vault, storage=storage)
