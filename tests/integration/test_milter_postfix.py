"""guardmail as the milter of a real, private Postfix (``smtpd_milters`` and
``non_smtpd_milters``), run as ``guardmail run``: protected recipients removed after archiving,
protected-only mail refused or discarded, local submissions filtered, a vault failure a 4xx."""

from __future__ import annotations

import smtplib
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from guardmail.config.settings import Settings
from guardmail.daemon.tenant import open_tenant
from guardmail.vault import journal
from tests.conftest import wait_for
from tests.servers.ports import free_ports
from tests.servers.postfix import Guardmail, Postfix, start_postfix, strip_added_headers

pytestmark = pytest.mark.integration

USERS = [
    "user@example.test",
    "alice@example.test",
    "alice-quarantine@example.test",
    "bob@example.test",
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
recipients: [bob@example.test]
offenders:
  - name: Ex
    domains: [bad.example]
    action: block
"""
# The main config's own offender protects every recipient of no tenant (user@).
CONFIG = """\
state_dir: {root}/var
tenant: main
offenders:
  - name: Main ex
    addresses: [main-ex@worse.example]
sources:
  smtp_filter:
    listen: {listen}
    mode: milter
    tenants_dir: {root}/tenants.d
"""
OFFENDER = (
    b"From: Ex <ex@bad.example>\r\nSubject: you\r\nMessage-ID: <o-1@bad.example>\r\n\r\n"
    b"I see you.\r\n"
)
# What must reach the vault unchanged: 8-bit, a long folded header, a leading dot, a tab,
# "From " at a line start, trailing spaces, a 1,500-octet line.
SHAPED = (
    b"From: Main Ex <main-ex@worse.example>\r\n"
    b"To: user@example.test\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"X-Long: " + b" ".join(b"word%d" % i for i in range(60)) + b"\r\n"
    b"X-Folded: one\r\n\ttwo\r\n   three\r\n"
    b"X-Tab:\tvalue\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Hallo, w\xc3\xb6rld.\r\n"
    b".leading dot\r\nFrom a line\r\ntrailing   \r\n"
    b"tab\there\r\n" + b"x" * 1500 + b"\r\n"
)


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
    root: Path, started: list[Postfix | Guardmail], *, tcp: bool = False
) -> tuple[Postfix, Guardmail]:
    # The socket lives in Postfix's own (0755) directory: pytest's tmp_path is 0700.
    pf_root = Path(tempfile.mkdtemp(prefix="gm-pf-"))
    if tcp:
        (port,) = free_ports(1)
        milter, listen = f"inet:127.0.0.1:{port}", f"127.0.0.1:{port}"
    else:
        milter = f"unix:{pf_root / 'milter.sock'}"
        listen = f"{milter}\n    socket_group: postfix"
    postfix = start_postfix("milter", USERS, root=pf_root, milter=milter)
    started.append(postfix)
    (root / "guardmail.yaml").write_text(CONFIG.format(root=root, listen=listen))
    guardmail = Guardmail(root / "guardmail.yaml", root / "guardmail.log")
    started.append(guardmail)
    guardmail.wait_listening()
    return postfix, guardmail


def evidence(state_dir: Path, tenant: str) -> list[tuple[dict[str, Any], bytes]]:
    """(journal entry, blob) of each item archived for ``tenant``."""
    opened = open_tenant(Settings(state_dir=state_dir, tenant=tenant))
    try:
        return [
            (journal.entry(row), opened.vault.blobs.get(str(row.sha256)))
            for row in opened.vault.rows(kind="archived")
        ]
    finally:
        opened.close()


def sendmail(postfix: Postfix, sender: str, recipients: list[str], raw: bytes) -> None:
    """A local submission: Postfix's sendmail -> postdrop -> pickup -> cleanup."""
    subprocess.run(
        ["/usr/sbin/sendmail", "-C", str(postfix.etc), "-f", sender, "-i", "--", *recipients],
        input=raw.replace(b"\r\n", b"\n"),
        check=True,
        timeout=60,
    )


def content(delivered: bytes) -> bytes:
    """A Maildir file without the headers Postfix added, with CRLF line ends again."""
    _, rest = strip_added_headers(delivered)
    return rest.replace(b"\n", b"\r\n")


def settle(postfix: Postfix) -> None:
    wait_for(lambda: postfix.queue() == [], what="empty queue")


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
def test_mixed_recipients_lose_only_the_protected_ones_after_archiving(
    root: Path, started: list[Postfix | Guardmail], tcp: bool
) -> None:
    postfix, guardmail = start(root, started, tcp=tcp)
    recipients = ["alice@example.test", "user@example.test", "bob@example.test"]
    refused = postfix.send(recipients, OFFENDER, sender="ex@bad.example")
    assert refused == {}
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 1, what="clean copy")
    wait_for(
        lambda: len(postfix.delivered("alice-quarantine@example.test")) == 1, what="quarantine"
    )
    settle(postfix)
    assert postfix.delivered("alice@example.test") == []
    assert postfix.delivered("bob@example.test") == []
    assert content(postfix.delivered("user@example.test")[0]) == OFFENDER
    assert content(postfix.delivered("alice-quarantine@example.test")[0]) == OFFENDER
    ((alice, alice_blob),) = evidence(root / "var", "alice")
    ((bob, bob_blob),) = evidence(root / "var", "bob")
    assert alice_blob == bob_blob == OFFENDER  # exactly as the client sent it
    assert (
        alice["meta"]["rcpt_to"] == "alice@example.test"
        and bob["meta"]["rcpt_to"] == "bob@example.test"
    )
    assert alice["meta"]["mode"] == "milter" and alice["meta"]["queue_id"]
    # The envelope kept: the client's address and HELO name (Postfix's HELO stage).
    assert alice["meta"]["helo"] == "client.example.org"
    assert "[127.0.0.1]" in alice["meta"]["client"]
    assert "smtp_filter.error" not in guardmail.log_text()


def test_protected_only_mail_is_refused_with_550_or_discarded_and_archived_exactly(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    postfix, guardmail = start(root, started)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        postfix.send(["bob@example.test"], OFFENDER, sender="ex@bad.example")
    assert refused.value.smtp_code == 550
    assert cast(bytes, refused.value.smtp_error).startswith(b"5.7.1 ")
    # The main config's offender, to a recipient of no tenant: discarded (quarantine, and no
    # mailbox to put it in), the client told 250.
    assert postfix.send(["user@example.test"], SHAPED, sender="main-ex@worse.example") == {}
    wait_for(lambda: "milter-discard" in postfix.log(), what="discard logged")
    settle(postfix)
    assert postfix.delivered("user@example.test") == []
    assert postfix.delivered("bob@example.test") == []
    ((_, bob_blob),) = evidence(root / "var", "bob")
    assert bob_blob == OFFENDER
    ((main, main_blob),) = evidence(root / "var", "main")
    assert main_blob == SHAPED
    assert main["meta"]["rcpt_to"] == "user@example.test"
    assert "smtp_filter.error" not in guardmail.log_text()


def test_a_locally_submitted_message_is_filtered_too(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    postfix, _ = start(root, started)
    sendmail(postfix, "ex@bad.example", ["alice@example.test", "user@example.test"], OFFENDER)
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 1, what="clean copy")
    wait_for(
        lambda: len(postfix.delivered("alice-quarantine@example.test")) == 1, what="quarantine"
    )
    settle(postfix)
    assert postfix.delivered("alice@example.test") == []
    ((entry, blob),) = evidence(root / "var", "alice")
    assert entry["meta"]["rcpt_to"] == "alice@example.test"
    # As submitted, plus the Date header cleanup adds to local mail that lacks one.
    head, body = OFFENDER.split(b"\r\n\r\n", 1)
    assert blob.startswith(head + b"\r\nDate: ") and blob.endswith(b"\r\n\r\n" + body)


def test_a_vault_failure_is_a_451_and_local_mail_stays_queued_until_it_recovers(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    postfix, guardmail = start(root, started)
    blobs = root / "var" / "vault" / "alice" / "blobs"
    blobs.parent.mkdir(parents=True, exist_ok=True)
    blobs.write_text("a file where the blob directory should be")
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        postfix.send(["alice@example.test", "user@example.test"], OFFENDER, sender="ex@bad.example")
    assert deferred.value.smtp_code == 451
    assert cast(bytes, deferred.value.smtp_error).startswith(b"4.3.0 Evidence vault unavailable")
    sendmail(postfix, "ex@bad.example", ["alice@example.test", "user@example.test"], OFFENDER)
    wait_for(
        lambda: guardmail.log_text().count("smtp_filter.vault_unavailable") >= 2,
        what="the local submission refused too",
    )
    assert postfix.queue() != []  # still in Postfix's hands (maildrop)
    assert postfix.delivered("user@example.test") == []  # not even the clean copy

    blobs.unlink()
    postfix.postfix_cmd("postkick", "public", "pickup", "W")
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 1, what="after recovery")
    wait_for(
        lambda: len(postfix.delivered("alice-quarantine@example.test")) == 1, what="quarantine"
    )
    settle(postfix)
    assert len(evidence(root / "var", "alice")) == 1


def test_with_the_daemon_stopped_postfix_defers_and_after_restart_delivers_once(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    # milter_default_action = tempfail: nothing passes unjudged while guardmail is down.
    postfix, guardmail = start(root, started)
    assert guardmail.stop() == 0
    with pytest.raises(smtplib.SMTPResponseException) as deferred:
        postfix.send(["alice@example.test", "user@example.test"], OFFENDER, sender="ex@bad.example")
    assert 400 <= deferred.value.smtp_code < 500
    sendmail(postfix, "ex@bad.example", ["alice@example.test", "user@example.test"], OFFENDER)
    wait_for(lambda: "milter" in postfix.log() and postfix.queue() != [], what="kept queued")
    assert postfix.delivered("user@example.test") == []

    again = Guardmail(root / "guardmail.yaml", root / "guardmail-2.log")
    started.append(again)
    again.wait_listening()
    postfix.postfix_cmd("postkick", "public", "pickup", "W")
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 1, what="after restart")
    settle(postfix)
    assert postfix.postfix_cmd("postqueue", "-p").stdout.strip() == "Mail queue is empty"
    assert len(postfix.delivered("alice-quarantine@example.test")) == 1
    assert postfix.delivered("alice@example.test") == []
    assert len(evidence(root / "var", "alice")) == 1


def test_a_peer_that_is_not_postfix_is_dropped_and_mail_goes_on(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    postfix, guardmail = start(root, started)
    path = str(postfix.root / "milter.sock")
    for garbage in (
        b"\xff\xff\xff\xffO",  # a 4 GB packet
        b"\0\0\0\x05M<a>\0",  # MAIL before negotiation
        b"\0\0\0\x02Ox",  # a negotiation too short
    ):
        with socket.socket(socket.AF_UNIX) as peer:
            peer.connect(path)
            peer.sendall(garbage)
            peer.settimeout(10)
            assert peer.recv(100) == b""  # closed by guardmail
    assert postfix.send(["alice@example.test"], OFFENDER, sender="ex@bad.example") == {}
    wait_for(lambda: len(evidence(root / "var", "alice")) == 1, what="archived")
    log = guardmail.log_text()
    assert log.count("smtp_filter.milter_dropped") == 3 and "Traceback" not in log


@pytest.mark.parametrize("point", ["pipeline.archived", "pipeline.journaled", "milter.replied"])
def test_guardmail_killed_mid_message_leaves_it_queued_and_nothing_twice(
    root: Path, started: list[Postfix | Guardmail], monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    # Killed (SIGKILL) after archiving (or acting, and journaling that), before answering
    # Postfix: Postfix tempfails, pickup keeps the local submission, and after the restart it is
    # delivered once, archived once, with one action entry (after pipeline.journaled the retry
    # journaled a second one: found while adding the milter crash campaign).
    monkeypatch.setenv("GUARDMAIL_FAULT", f"{point}:1")
    postfix, guardmail = start(root, started)
    sendmail(postfix, "ex@bad.example", ["alice@example.test", "user@example.test"], OFFENDER)
    wait_for(lambda: guardmail.proc.poll() is not None, what="guardmail killed at the fault")
    assert postfix.queue() != [] and postfix.delivered("user@example.test") == []

    monkeypatch.delenv("GUARDMAIL_FAULT")
    again = Guardmail(root / "guardmail.yaml", root / "guardmail-2.log")
    started.append(again)
    again.wait_listening()
    postfix.postfix_cmd("postkick", "public", "pickup", "W")
    wait_for(lambda: len(postfix.delivered("user@example.test")) == 1, what="after restart")
    settle(postfix)
    assert postfix.postfix_cmd("postqueue", "-p").stdout.strip() == "Mail queue is empty"
    assert len(postfix.delivered("alice-quarantine@example.test")) == 1
    assert postfix.delivered("alice@example.test") == []
    archived = evidence(root / "var", "alice")
    assert len(archived) == 1  # once, although the retry came with a new queue ID
    opened = open_tenant(Settings(state_dir=root / "var", tenant="alice"))
    try:
        acts = [journal.entry(row) for row in opened.vault.rows(kind="action")]
    finally:
        opened.close()
    assert [a["archived_seq"] for a in acts] == [archived[0][0]["seq"]]


def test_a_quarantine_copy_that_cannot_be_delivered_bounces_to_no_one(
    root: Path, started: list[Postfix | Guardmail]
) -> None:
    # user@ is alice's offender here, and her quarantine mailbox does not exist: its copy fails.
    # The offender stays the envelope sender (bob's clean copy keeps it), so only the quarantine
    # recipient's NOTIFY=NEVER (SMFIR_ADDRCPT_PAR) keeps the failure from telling the offender.
    (root / "tenants.d" / "alice.yaml").write_text(
        ALICE.replace("ex@bad.example", "user@example.test").replace(
            "alice-quarantine@", "missing@"
        )
    )
    postfix, guardmail = start(root, started)
    raw = OFFENDER.replace(b"Ex <ex@bad.example>", b"User <user@example.test>")
    postfix.send(["alice@example.test", "bob@example.test"], raw, sender="user@example.test")
    wait_for(lambda: len(postfix.delivered("bob@example.test")) == 1, what="bob's copy")
    wait_for(lambda: "to=<missing@example.test>" in postfix.log(), what="the quarantine try")
    settle(postfix)
    assert "status=bounced" in postfix.log()  # the copy did fail ...
    assert "sender non-delivery notification" not in postfix.log()  # ... and nobody was told
    assert postfix.delivered("user@example.test") == []
    assert postfix.delivered("alice@example.test") == []
    assert content(postfix.delivered("bob@example.test")[0]) == raw
    ((alice, blob),) = evidence(root / "var", "alice")
    assert blob == raw and alice["meta"]["mail_from"] == "user@example.test"
    assert "smtp_filter.error" not in guardmail.log_text()
