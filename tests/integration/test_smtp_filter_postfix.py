"""guardmail as the content filter of a real, private Postfix (after-queue and before-queue), run
as ``guardmail run``: per-recipient tenants, byte-identical relaying, nothing lost on failures."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guardmail.config.settings import Settings
from guardmail.core.identity import normalize_address
from guardmail.core.item import read_mail
from guardmail.daemon.tenant import open_tenant
from guardmail.vault import journal
from tests.conftest import wait_for
from tests.hostile.corpus import corpus
from tests.servers.postfix import Guardmail, Postfix, start_postfix, strip_added_headers

pytestmark = pytest.mark.integration

USERS = [
    "user@example.test",
    "alice@example.test",
    "alice-quarantine@example.test",
    "bob@example.test",
    "carol@family.test",
]
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
recipients: [bob@example.test, "@family.test"]
offenders:
  - name: Ex
    domains: [bad.example]
    action: block
"""
CONFIG = """\
state_dir: {root}/var
sources:
  smtp_filter:
    listen: 127.0.0.1:{listen}
    next_hop: 127.0.0.1:{next_hop}
    mode: {mode}
    tenants_dir: {root}/tenants.d
    timeout_seconds: 30
"""
# What a filter must not change: 8-bit UTF-8, a leading dot, "From " at a line start, trailing
# spaces, a folded header, a tab, a line of 1,500 octets (over SMTP's 998). (Not a bare CR:
# Postfix's smtpd itself turns it into a space, with or without a filter.)
CLEAN = (
    "From: Friend <friend@ok.example>\r\n"
    "To: user@example.test\r\n"
    "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    "X-Folded: one\r\n\ttwo\r\n"
    "Message-ID: <clean-1@ok.example>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Hallo, wörld.\r\n"
    ".leading dot\r\n"
    "From a line starting with From\r\n"
    "trailing spaces   \r\n"
    "tab\there\r\n" + "x" * 1500 + "\r\n"
).encode()
OFFENDER = (
    b"From: Ex <ex@bad.example>\r\nSubject: you\r\nMessage-ID: <o-1@bad.example>\r\n\r\n"
    b"I see you.\r\n"
)

# The main config's own offender: it protects every recipient of no tenant (user@).
MAIN = """\
tenant: main
offenders:
  - name: Main ex
    addresses: [main-ex@worse.example]
"""
MAIN_EX = CLEAN.replace(b"Friend <friend@ok.example>", b"Main Ex <main-ex@worse.example>")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "tenants.d").mkdir()
    (tmp_path / "tenants.d" / "alice.yaml").write_text(ALICE)
    (tmp_path / "tenants.d" / "bob.yaml").write_text(BOB)
    return tmp_path


@pytest.fixture
def started() -> Iterator[list[Postfix | Guardmail]]:
    running: list[Postfix | Guardmail] = []
    yield running
    for thing in reversed(running):
        thing.stop()


def start(
    root: Path,
    started: list[Postfix | Guardmail],
    mode: str = "after",
    fault: str = "",
    main: str = "",
) -> tuple[Postfix, Guardmail]:
    postfix = start_postfix(mode, USERS)
    started.append(postfix)
    (root / "guardmail.yaml").write_text(
        main
        + CONFIG.format(
            root=root,
            listen=postfix.filter_port,
            next_hop=postfix.reinject_port,
            mode="after_queue" if mode == "after" else "before_queue",
        )
    )
    env = {"GUARDMAIL_FAULT": fault} if fault else {}
    guardmail = Guardmail(root / "guardmail.yaml", root / "guardmail.log", env=env)
    started.append(guardmail)
    guardmail.wait_listening()
    return postfix, guardmail


def evidence(root: Path, tenant: str) -> list[tuple[dict[str, Any], bytes]]:
    """(journal entry, blob) of each item archived for ``tenant``."""
    opened = open_tenant(Settings(state_dir=root / "var", tenant=tenant))
    try:
        return [
            (journal.entry(row), opened.vault.blobs.get(str(row.sha256)))
            for row in opened.vault.rows(kind="archived")
        ]
    finally:
        opened.close()


def actions(root: Path, tenant: str) -> list[dict[str, Any]]:
    """The ``action`` entries of ``tenant``'s journal."""
    opened = open_tenant(Settings(state_dir=root / "var", tenant=tenant))
    try:
        return [journal.entry(row) for row in opened.vault.rows(kind="action")]
    finally:
        opened.close()


def body(delivered: bytes) -> bytes:
    """A Maildir file without what Postfix added (checked to be only Postfix's own headers)."""
    added, rest = strip_added_headers(delivered)
    names = [h.split(b":")[0] for h in added]
    assert names == [b"Return-Path", b"X-Original-To", b"Delivered-To", b"Received", b"Received"]
    return rest


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def settle(postfix: Postfix) -> None:
    wait_for(lambda: postfix.queue() == [], what="empty queue")


def test_offender_mail_is_archived_then_quarantined_or_blocked_and_clean_mail_is_unchanged(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    postfix, guardmail = start(root, started)
    postfix.send(["user@example.test", "alice@example.test"], CLEAN, sender="friend@ok.example")
    postfix.send(["alice@example.test"], OFFENDER, sender="ex@bad.example")
    postfix.send(["bob@example.test", "carol@family.test"], OFFENDER, sender="ex@bad.example")
    postfix.send(["alice@example.test", "user@example.test"], OFFENDER, sender="ex@bad.example")
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 2, what="user's two")
    wait_for(
        lambda: len(postfix.delivered("alice-quarantine@example.test")) == 2, what="quarantine"
    )
    settle(postfix)

    clean_user, split_user = postfix.delivered("user@example.test")
    (clean_alice,) = postfix.delivered("alice@example.test")  # only the clean one
    assert body(clean_user) == body(clean_alice) == lf(CLEAN)  # byte for byte
    assert body(split_user) == lf(OFFENDER)  # the unprotected recipient still gets it
    assert split_user.startswith(b"Return-Path: <ex@bad.example>\n")
    for copy in postfix.delivered("alice-quarantine@example.test"):
        assert body(copy) == lf(OFFENDER)
        assert copy.startswith(b"Return-Path: <>\n")  # nothing can bounce to the offender
    assert postfix.delivered("bob@example.test") == postfix.delivered("carol@family.test") == []

    alice = evidence(root, "alice")
    bob = evidence(root, "bob")
    assert [e["action"] for e, _ in alice] == ["quarantine", "quarantine"]
    assert [(e["action"], e["meta"]["rcpt_to"]) for e, _ in bob] == [
        ("block", "bob@example.test, carol@family.test")
    ]
    for entry, blob in alice + bob:
        # exactly what Postfix handed over: its Received header, then the sent bytes
        assert blob.startswith(b"Received: from client.example.org") and blob.endswith(OFFENDER)
        queue_id = re.search(rb"with ESMTP id ([0-9A-F]+)", blob)
        assert queue_id is not None
        assert entry["meta"]["queue_id"] == entry["source_ref"][5:] == queue_id.group(1).decode()
        assert entry["meta"]["mail_from"] == "ex@bad.example"
        assert entry["meta"]["client"] == "localhost[127.0.0.1]"
    assert "non-delivery notification" not in postfix.log()
    assert guardmail.proc.poll() is None

    # The ISP (or the tenant's helper) reads one tenant's evidence with the usual commands.
    config = str(root / "guardmail.yaml")
    listing = subprocess.run(
        [sys.executable, "-m", "guardmail", "-c", config, "--tenant", "bob", "evidence", "list",
         "--json"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert [json.loads(line)["action"] for line in listing.stdout.splitlines()] == ["block"]
    unknown = subprocess.run(
        [sys.executable, "-m", "guardmail", "-c", config, "--tenant", "nobody", "evidence", "list"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert unknown.returncode == 1 and b"no tenant named 'nobody'" in unknown.stderr


def test_smtputf8_8bitmime_and_a_60_mb_message_pass_unchanged(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    postfix, guardmail = start(root, started)
    utf8 = "From: Zoë <zoë@exämple.test>\r\nSubject: Grüße\r\n\r\nÄpfel\r\n".encode()
    postfix.send(
        ["user@example.test"],
        utf8,
        sender="zoë@exämple.test",
        mail_options=["SMTPUTF8", "BODY=8BITMIME"],
    )
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+/\r\n"
    big = b"From: friend@ok.example\r\nSubject: big\r\n\r\n" + line * (60_000_000 // len(line))
    began = time.monotonic()
    postfix.send(["user@example.test", "alice@example.test"], big, sender="friend@ok.example")
    wait_for(lambda: len(postfix.delivered("alice@example.test")) == 1, timeout=120, what="big")
    print(f"60 MB through Postfix and guardmail in {time.monotonic() - began:.1f} s")
    settle(postfix)
    small, large = postfix.delivered("user@example.test")
    assert body(small) == lf(utf8)
    assert small.startswith("Return-Path: <zoë@exämple.test>\n".encode())
    assert hashlib.sha256(body(large)).digest() == hashlib.sha256(lf(big)).digest()
    assert "smtp_filter.error" not in guardmail.log_text()


def test_a_vault_failure_keeps_the_mail_queued_until_the_vault_recovers(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    postfix, guardmail = start(root, started)
    blobs = root / "var" / "vault" / "alice" / "blobs"
    blobs.parent.mkdir(parents=True, exist_ok=True)
    blobs.write_text("a file where the blob directory should be")
    postfix.send(["alice@example.test", "user@example.test"], OFFENDER, sender="ex@bad.example")
    wait_for(lambda: "451 4.3.0 Evidence vault unavailable" in postfix.log(), what="deferral")
    (queued,) = postfix.queue()
    reasons = {str(r["delay_reason"]) for r in queued["recipients"]}  # type: ignore[attr-defined]
    assert all("451 4.3.0 Evidence vault unavailable" in r for r in reasons)
    listing = postfix.postfix_cmd("postqueue", "-p").stdout
    assert str(queued["queue_id"]) in listing and "Evidence vault unavailable" in listing
    assert postfix.delivered("user@example.test") == []  # not even the clean copy yet
    assert "smtp_filter.vault_unavailable" in guardmail.log_text()

    blobs.unlink()
    postfix.flush()
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 1, what="after recovery")
    wait_for(
        lambda: len(postfix.delivered("alice-quarantine@example.test")) == 1, what="quarantine"
    )
    settle(postfix)
    assert len(evidence(root, "alice")) == 1


def test_next_hop_down_defers_and_the_retry_delivers_once(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    postfix, guardmail = start(root, started)
    postfix.send(["user@example.test"], CLEAN, sender="friend@ok.example")
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 1, what="first")
    postfix.set_reinjection(False)
    postfix.send(["user@example.test", "alice@example.test"], OFFENDER, sender="ex@bad.example")
    wait_for(lambda: "451 4.3.0 Next hop unavailable" in postfix.log(), what="deferral")
    assert len(postfix.queue()) == 1
    assert "smtp_filter.next_hop_failed" in guardmail.log_text()

    postfix.set_reinjection(True)
    postfix.flush()
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 2, what="retried")
    wait_for(
        lambda: len(postfix.delivered("alice-quarantine@example.test")) == 1, what="quarantine"
    )
    settle(postfix)
    assert len(evidence(root, "alice")) == 1  # archived at the first attempt, not again
    time.sleep(0.5)
    assert len(postfix.delivered("user@example.test")) == 2


@pytest.mark.parametrize(
    ("point", "to", "raw", "mailbox"),
    [
        ("smtp.relayed", "user@example.test", CLEAN, "user@example.test"),
        ("smtp.replied", "user@example.test", CLEAN, "user@example.test"),
        ("smtp.quarantined", "alice@example.test", OFFENDER, "alice-quarantine@example.test"),
        ("pipeline.journaled", "alice@example.test", OFFENDER, "alice-quarantine@example.test"),
    ],
)
def test_a_crash_after_the_next_hop_took_a_copy_and_postfix_retrying_delivers_it_once(
    root: Path, started: list[Postfix | Guardmail], point: str, to: str, raw: bytes, mailbox: str
) -> None:
    # Killed after the next hop's 250 and before Postfix heard the filter's: Postfix retries
    # the message. The copy the next hop took is remembered durably (it was in memory only:
    # the retry delivered a second copy), and the tenant's action is not taken again.
    postfix, killed = start(root, started, fault=f"{point}:1")
    postfix.send([to], raw, sender="ex@bad.example" if raw is OFFENDER else "friend@ok.example")
    assert killed.proc.wait(timeout=60) == -signal.SIGKILL
    wait_for(lambda: len(postfix.delivered(mailbox)) == 1, what="the copy taken before the kill")
    wait_for(lambda: "message may be sent more than once" in postfix.log(), what="deferral")
    assert len(postfix.queue()) == 1  # Postfix will try it again

    again = Guardmail(root / "guardmail.yaml", root / "again.log")
    started.append(again)
    again.wait_listening()
    postfix.flush()
    settle(postfix)
    assert "smtp_filter.message" in again.log_text()
    (copy,) = postfix.delivered(mailbox)
    assert body(copy) == lf(raw)
    if raw is OFFENDER:
        assert len(evidence(root, "alice")) == 1
        assert len(actions(root, "alice")) == 1
        assert postfix.delivered("alice@example.test") == []


def test_a_retry_after_a_crash_does_not_judge_again_a_recipient_already_relayed(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    # Relayed clean to alice, killed before Postfix heard it; meanwhile the sender became one of
    # alice's offenders. The retry must not quarantine (and archive) a copy alice already has.
    postfix, killed = start(root, started, fault="smtp.relayed:1")
    postfix.send(["alice@example.test"], CLEAN, sender="friend@ok.example")
    assert killed.proc.wait(timeout=60) == -signal.SIGKILL
    wait_for(lambda: len(postfix.delivered("alice@example.test")) == 1, what="the first copy")
    (root / "tenants.d" / "alice.yaml").write_text(
        ALICE.replace("[ex@bad.example]", "[ex@bad.example, friend@ok.example]")
    )
    again = Guardmail(root / "guardmail.yaml", root / "again.log")
    started.append(again)
    again.wait_listening()
    postfix.flush()
    settle(postfix)
    assert "smtp_filter.message" in again.log_text()
    (copy,) = postfix.delivered("alice@example.test")
    assert body(copy) == lf(CLEAN)
    assert postfix.delivered("alice-quarantine@example.test") == []
    assert evidence(root, "alice") == []


def test_tenant_file_edits_apply_and_a_broken_edit_keeps_the_last_good_tenants(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    postfix, guardmail = start(root, started)
    dave = root / "tenants.d" / "dave.yaml"
    dave.write_text(
        "name: dave\nrecipients: [user@example.test]\n"
        "offenders:\n  - {name: Ex, addresses: [ex@bad.example], action: block}\n"
    )
    wait_for(lambda: "tenants.reloaded" in guardmail.log_text(), what="new tenant file")
    postfix.send(["user@example.test"], OFFENDER, sender="ex@bad.example")
    wait_for(lambda: len(evidence(root, "dave")) == 1, what="archived for the new tenant")
    settle(postfix)
    assert postfix.delivered("user@example.test") == []

    dave.write_text("name: dave\nrecipients: [user@example.test]\noffender: []\n")
    wait_for(lambda: "tenants.reload_rejected" in guardmail.log_text(), what="bad edit")
    assert f"{dave}:3:1: offender: unknown key 'offender'" in guardmail.log_text()
    postfix.send(["user@example.test"], OFFENDER.replace(b"o-1", b"o-2"), sender="ex@bad.example")
    wait_for(lambda: len(evidence(root, "dave")) == 2, what="the last good rules still apply")

    dave.unlink()
    wait_for(lambda: guardmail.log_text().count("tenants.reloaded") == 2, what="removal")
    postfix.send(["user@example.test"], OFFENDER, sender="ex@bad.example")
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 1, what="unprotected again")


def test_before_queue_refuses_blocked_mail_with_550_to_the_sender(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    postfix, _ = start(root, started, mode="before")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        postfix.send(["bob@example.test"], OFFENDER, sender="ex@bad.example")
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        550,
        b"5.7.1 Message refused by the recipient's protection",
    )
    assert postfix.queue() == []
    ((entry, blob),) = evidence(root, "bob")  # archived before the refusal
    assert blob.endswith(OFFENDER) and entry["meta"]["mode"] == "before_queue"
    assert "proxy-reject: END-OF-MESSAGE: 550 5.7.1" in postfix.log()

    postfix.send(["alice@example.test", "user@example.test"], OFFENDER, sender="ex@bad.example")
    postfix.send(["bob@example.test"], CLEAN, sender="friend@ok.example")
    wait_for(lambda: len(postfix.delivered("alice-quarantine@example.test")) == 1, what="q")
    wait_for(lambda: len(postfix.delivered("bob@example.test")) == 1, what="clean")
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 1, what="split")
    assert body(postfix.delivered("bob@example.test")[0]).endswith(lf(CLEAN))


@pytest.mark.parametrize(
    ("point", "copied"), [("pipeline.archived", False), ("smtp.quarantined", True)]
)
def test_before_queue_a_session_cut_after_the_archive_gets_its_action_at_restart(
    root: Path, started: list[Postfix | Guardmail], point: str, copied: bool
) -> None:
    # Killed between the archive and its action entry: the sender got no 250 and keeps the
    # message, but no retry can be matched to the entry (no queue ID). It stayed without an
    # action forever (found by the before-queue crash campaign): now the restart journals one.
    postfix, killed = start(root, started, mode="before", fault=f"{point}:1")
    with pytest.raises(smtplib.SMTPResponseException) as cut:
        postfix.send(["alice@example.test"], OFFENDER, sender="ex@bad.example")
    assert cut.value.smtp_code == 451
    assert killed.proc.wait(timeout=60) == -signal.SIGKILL
    ((entry, blob),) = evidence(root, "alice")
    assert blob.endswith(OFFENDER) and actions(root, "alice") == []

    again = Guardmail(root / "guardmail.yaml", root / "again.log")
    started.append(again)
    again.wait_listening()
    (action,) = actions(root, "alice")
    assert action["archived_seq"] == entry["seq"] and action["reconciled"] is True
    assert "the SMTP session ended without the filter's reply" in action["done"]
    assert ("alice-quarantine@example.test first" in action["done"]) is copied
    assert len(postfix.delivered("alice-quarantine@example.test")) == int(copied)


@pytest.mark.parametrize("mode", ["after", "before"])
def test_the_main_configs_offenders_protect_the_recipients_of_no_tenant(
    root: Path, started: list[Postfix | Guardmail], mode: str
) -> None:
    postfix, guardmail = start(root, started, mode=mode, main=MAIN)
    assert postfix.send(["user@example.test"], MAIN_EX, sender="main-ex@worse.example") == {}
    split = MAIN_EX.replace(b"<clean-1@", b"<split-1@")
    everyone = ["user@example.test", "alice@example.test", "bob@example.test"]
    assert postfix.send(everyone, split, sender="main-ex@worse.example") == {}
    assert postfix.send(["user@example.test"], CLEAN, sender="friend@ok.example") == {}
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 1, what="clean copy")
    wait_for(lambda: len(postfix.delivered("alice@example.test")) == 1, what="alice's copy")
    wait_for(lambda: len(postfix.delivered("bob@example.test")) == 1, what="bob's copy")
    settle(postfix)

    # user@ gets the clean message only; the tenants, whose offender this is not, get theirs once
    (clean,) = postfix.delivered("user@example.test")
    assert body(clean) == lf(CLEAN)
    for other in ("alice@example.test", "bob@example.test"):
        (copy,) = postfix.delivered(other)
        assert body(copy) == lf(split)
    assert postfix.delivered("alice-quarantine@example.test") == []
    assert evidence(root, "alice") == evidence(root, "bob") == []

    # archived (before the answer) in the main config's vault, each with user@ only
    archived = evidence(root, "main")
    assert [(e["action"], e["meta"]["rcpt_to"]) for e, _ in archived] == [
        ("quarantine", "user@example.test"),
        ("quarantine", "user@example.test"),
    ]
    # After-queue, Postfix's queue manager may hand the two messages over in either order (two
    # filter connections at once): each sent message is archived once, in whichever order.
    unmatched = [MAIN_EX, split]
    for entry, blob in archived:
        sent = next((m for m in unmatched if blob.endswith(m)), None)
        assert sent is not None, f"archived bytes that were not sent: {blob[:300]!r}"
        unmatched.remove(sent)
        # exactly what Postfix handed over: its Received header, then the sent bytes
        assert blob.startswith(b"Received: from client.example.org")
        added = blob[: -len(sent)].split(b"\r\n")
        assert added[-1] == b"" and all(line[:1] in b" \t" for line in added[1:-1])
        assert entry["sha256"] == hashlib.sha256(blob).hexdigest()
        assert entry["meta"]["mode"] == f"{mode}_queue"
    assert "smtp_filter.error" not in guardmail.log_text()
    assert "non-delivery notification" not in postfix.log()


def test_a_broken_tenant_file_at_start_is_exit_2_with_file_and_line(root: Path) -> None:
    (root / "tenants.d" / "bob.yaml").write_text("name: bob\nrecipients: [bob]\n")
    (root / "guardmail.yaml").write_text(
        CONFIG.format(root=root, listen=10025, next_hop=10026, mode="after_queue")
    )
    done = subprocess.run(
        [sys.executable, "-m", "guardmail", "-c", str(root / "guardmail.yaml"), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 2
    assert (
        f"{root}/tenants.d/bob.yaml:2:14: recipients.0: 'bob' is neither an address" in done.stderr
    )


HOSTILE_TENANT = """\
name: hostile
recipients: [user@example.test]
offenders:
  - name: Stalker
    addresses: [stalker@example.net]
quarantine_mailbox: alice-quarantine@example.test
"""


def test_hostile_corpus_through_postfix_is_judged_on_what_postfix_hands_over(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    # Postfix itself changes some shapes (it cuts headers past header_size_limit, ends bare
    # CR and LF lines): what counts is the copy the filter received. Every message leaves the
    # queue once, the daemon stays up, no delivered copy shows the offender in a sender header,
    # and every quarantined copy is archived.
    (root / "tenants.d" / "hostile.yaml").write_text(HOSTILE_TENANT)
    postfix, guardmail = start(root, started)
    accepted = 0
    for hostile in corpus():
        try:
            postfix.send(["user@example.test"], hostile.raw, sender="relay@list.example")
            accepted += 1
        except smtplib.SMTPException:
            pass  # refused by Postfix itself: never reaches the filter
    wait_for(
        lambda: (
            len(postfix.delivered("user@example.test"))
            + len(postfix.delivered("alice-quarantine@example.test"))
            == accepted
        ),
        timeout=120,
        what="every accepted message delivered or quarantined",
    )
    settle(postfix)
    assert guardmail.proc.poll() is None
    log = guardmail.log_text()
    assert "Traceback" not in log and "smtp_filter.error" not in log
    for copy in postfix.delivered("user@example.test"):
        _, received = strip_added_headers(copy)
        found = (normalize_address(i.address) for i in read_mail(received).identities if i.address)
        senders = {n.key for n in found if n is not None}
        assert "stalker@example.net" not in senders, received[:300]
    quarantined = postfix.delivered("alice-quarantine@example.test")
    # Of the 30 offender shapes, those whose sender Postfix cut away (past header_size_limit)
    # arrive as clean mail; the rest are caught (26 of 30 with this Postfix).
    assert len(quarantined) >= 24, (accepted, len(quarantined))
    assert len(evidence(root, "hostile")) == len(quarantined)
