"""The real daemon watching a real Dovecot over IMAPS (certificate from a CA made for the test):
quarantine, aliases, clean mail untouched, outages, UIDVALIDITY, no MOVE, vault failure, errors,
and the first scan handling its offenders as one batch."""

import hashlib
import imaplib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.hostile.corpus import corpus
from tests.integration.guardmail_proc import Daemon, guardmail
from tests.servers.dovecot import Dovecot, start_dovecot

pytestmark = pytest.mark.integration

# Dovecot's default capability list (2.3.19) without MOVE.
NO_MOVE = """\
protocol imap {
  imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY \
THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT \
CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES \
WITHIN CONTEXT=SEARCH LIST-STATUS BINARY SPECIAL-USE
}
"""

OFFENDER = b"From: Stalker <stalker+love@Example.NET>\r\nSubject: you\r\n\r\nI see you\r\n"
REPLY_TO = b"From: new@fresh.example\r\nReply-To: stalker@example.net\r\nSubject: hi\r\n\r\nx\r\n"
CLEAN = b"From: friend@innocent.example\r\nSubject: lunch\r\n\r\nsee you\r\n"


def config_text(tmp: Path, server: Dovecot, *, password: str = "secret", ca: bool = True) -> str:
    (tmp / "password").write_text(password + "\n", encoding="utf-8")
    ca_line = f"      ca_file: {server.ca_file}\n" if ca else ""
    return f"""\
state_dir: {tmp}/var
offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
sources:
  imap:
    - name: alice
      host: 127.0.0.1
      port: {server.imaps_port}
      tls: implicit
{ca_line}      username: alice
      password_file: {tmp}/password
      poll_seconds: 0.5
"""


class Mailbox:
    """The victim's other mail client: appends and looks, on the plain loopback port."""

    def __init__(self, server: Dovecot) -> None:
        self.server = server

    def _conn(self) -> imaplib.IMAP4:
        return self.server.imap("alice")

    def append(self, raw: bytes, flags: str = "") -> None:
        conn = self._conn()
        try:
            typ, _ = conn.append("INBOX", flags or None, None, raw)
            assert typ == "OK"
        finally:
            conn.logout()

    def messages(self, folder: str) -> list[tuple[bytes, bytes]]:
        """(flags, exact bytes) of every message in ``folder``; [] if it does not exist."""
        conn = self._conn()
        try:
            typ, _ = conn.select(f'"{folder}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            out = []
            for part in data:
                if isinstance(part, tuple):
                    flags = part[0].split(b"FLAGS (")[1].split(b")")[0]
                    # \Recent is not stored: it goes to whichever session sees the message
                    # first (guardmail's or this one), so it says nothing about "untouched".
                    kept = b" ".join(f for f in flags.split() if f != b"\\Recent")
                    out.append((kept, part[1]))
            return out
        finally:
            conn.logout()

    def count(self, folder: str) -> int:
        return len(self.messages(folder))


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot({"alice": "secret"}, tls=True)
    yield server
    server.stop()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def start(tmp_path: Path, started: list[Daemon], name: str = "daemon") -> Daemon:
    d = Daemon(tmp_path / "guardmail.yaml", tmp_path / f"{name}.log")
    started.append(d)
    wait_for(lambda: "imap.connected" in d.log_text() or d.proc.poll() is not None, what=name)
    return d


def evidence(config: Path) -> list[dict[str, object]]:
    listing = guardmail(config, "evidence", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    return [json.loads(line) for line in listing.stdout.splitlines()]


def journal_entries(config: Path) -> int:
    """How many journal entries the vault holds, once ``evidence verify`` found them intact."""
    checked = guardmail(config, "evidence", "verify")
    assert checked.returncode == 0, checked.stderr
    return int(checked.stdout.split()[2])  # "vault default: N entries intact"


def offender_mail(n: int) -> bytes:
    return f"From: Stalker <stalker@example.net>\r\nSubject: {n}\r\n\r\nI see you {n}\r\n".encode()


def clean_mail(n: int) -> bytes:
    return f"From: friend@innocent.example\r\nSubject: plan {n}\r\n\r\nsee you {n}\r\n".encode()


def test_offender_and_aliases_quarantined_clean_mail_untouched_and_unread(
    dovecot: Dovecot, tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(config_text(tmp_path, dovecot))
    box = Mailbox(dovecot)
    box.append(OFFENDER)  # there before the first start: scan_existing judges it
    start(tmp_path, daemon_factory)
    box.append(REPLY_TO)
    box.append(CLEAN)
    wait_for(lambda: box.count("Quarantine") == 2, what="two quarantined")
    quarantined = [raw for _, raw in box.messages("Quarantine")]
    assert quarantined == [OFFENDER, REPLY_TO]
    assert box.messages("INBOX") == [(b"", CLEAN)]  # no \Seen, no other flag, same bytes
    daemon_factory[0].stop()
    items = evidence(config)
    assert [i["offender"] for i in items] == ["Example Offender", "Example Offender"]
    shown = [guardmail(config, "evidence", "show", str(i["seq"])).stdout for i in items]
    assert shown == [OFFENDER, REPLY_TO]  # the exact BODY.PEEK[] bytes


def test_mail_arriving_while_stopped_is_caught_on_start_and_not_archived_twice(
    dovecot: Dovecot, tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(config_text(tmp_path, dovecot))
    box = Mailbox(dovecot)
    first = start(tmp_path, daemon_factory, "first")
    box.append(OFFENDER)
    wait_for(lambda: box.count("Quarantine") == 1, what="live quarantine")
    assert first.stop() == 0
    box.append(REPLY_TO)
    box.append(CLEAN)
    start(tmp_path, daemon_factory, "second")
    wait_for(lambda: box.count("Quarantine") == 2, what="caught up after restart")
    daemon_factory[-1].stop()
    assert len(evidence(config)) == 2
    assert [raw for _, raw in box.messages("INBOX")] == [CLEAN]


def test_dovecot_restart_during_idle_is_survived(
    dovecot: Dovecot, tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, dovecot))
    box = Mailbox(dovecot)
    daemon = start(tmp_path, daemon_factory)
    dovecot.restart()
    wait_for(lambda: "imap.disconnected" in daemon.log_text(), what="disconnect noticed")
    box.append(OFFENDER)
    wait_for(lambda: box.count("Quarantine") == 1, timeout=30, what="quarantine after reconnect")
    assert daemon.log_text().count("imap.connected") >= 2


def test_uidvalidity_change_rescans_without_archiving_twice(
    dovecot: Dovecot, tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(config_text(tmp_path, dovecot))
    box = Mailbox(dovecot)
    box.append(CLEAN)
    first = start(tmp_path, daemon_factory, "first")
    box.append(OFFENDER)
    wait_for(lambda: box.count("Quarantine") == 1, what="quarantine")
    assert first.stop() == 0
    dovecot.doveadm("mailbox", "update", "-u", "alice", "--uid-validity", "424242", "INBOX")
    box.append(REPLY_TO)
    second = start(tmp_path, daemon_factory, "second")
    wait_for(lambda: box.count("Quarantine") == 2, what="rescan after UIDVALIDITY change")
    assert "imap.uidvalidity_changed" in second.log_text()
    second.stop()
    assert len(evidence(config)) == 2
    assert [raw for _, raw in box.messages("INBOX")] == [CLEAN]


def test_without_move_copy_and_uid_expunge_spare_other_deleted_mail(
    tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    server = start_dovecot({"alice": "secret"}, tls=True, extra_conf=NO_MOVE)
    try:
        (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, server))
        box = Mailbox(server)
        box.append(CLEAN, flags="(\\Deleted)")  # the user's own pending deletion
        start(tmp_path, daemon_factory)
        box.append(OFFENDER)
        wait_for(lambda: box.count("Quarantine") == 1, what="copy to quarantine")
        wait_for(lambda: box.count("INBOX") == 1, what="offender expunged from INBOX")
        assert box.messages("INBOX") == [(b"\\Deleted", CLEAN)]
    finally:
        server.stop()


def test_vault_failure_leaves_mail_in_inbox_until_the_vault_recovers(
    dovecot: Dovecot, tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, dovecot))
    blobs = tmp_path / "var" / "vault" / "default" / "blobs"
    blobs.parent.mkdir(parents=True)
    box = Mailbox(dovecot)
    daemon = start(tmp_path, daemon_factory)
    blobs.write_text("a file where the blob directory should be")
    box.append(OFFENDER)
    wait_for(lambda: "imap.vault_unavailable" in daemon.log_text(), what="vault failure")
    assert [raw for _, raw in box.messages("INBOX")] == [OFFENDER]
    assert box.count("Quarantine") == 0
    blobs.unlink()
    wait_for(lambda: box.count("Quarantine") == 1, timeout=30, what="handled after recovery")
    assert box.count("INBOX") == 0


def test_wrong_password_is_a_clear_error_and_no_crash(
    dovecot: Dovecot, tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, dovecot, password="nope"))
    daemon = Daemon(tmp_path / "guardmail.yaml", tmp_path / "daemon.log")
    daemon_factory.append(daemon)
    wait_for(lambda: "imap.login_failed" in daemon.log_text(), what="login failure logged")
    text = daemon.log_text()
    assert "login as 'alice' refused" in text and "retry_in=" in text
    assert "nope" not in text  # the password never reaches the log
    assert daemon.proc.poll() is None


def test_a_non_ascii_password_logs_in_and_never_reaches_the_log(
    tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    password = "Grüße-aus-Köln-€"
    server = start_dovecot({"alice": password}, tls=True)
    try:
        config = tmp_path / "guardmail.yaml"
        config.write_text(config_text(tmp_path, server, password=password))
        daemon = start(tmp_path, daemon_factory)
        assert "imap.connected" in daemon.log_text()
        server.deliver("alice@example.org", OFFENDER)
        wait_for(lambda: len(evidence(config)) == 1, what="offender mail archived")
        assert daemon.proc.poll() is None
        text = daemon.log_text()
        assert password not in text
        assert not any(c in text for c in password if not c.isascii())
    finally:
        server.stop()


def test_a_non_ascii_password_that_is_wrong_is_refused_and_the_daemon_keeps_running(
    dovecot: Dovecot, tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    password = "nöpe-ß"
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, dovecot, password=password))
    daemon = Daemon(tmp_path / "guardmail.yaml", tmp_path / "daemon.log")
    daemon_factory.append(daemon)
    wait_for(lambda: "imap.login_failed" in daemon.log_text(), what="login failure logged")
    text = daemon.log_text()
    assert "login as 'alice' refused: the server refused the login" in text
    assert "Traceback" not in text and "retry_in=" in text
    assert password not in text and not any(c in text for c in password if not c.isascii())
    assert daemon.proc.poll() is None


def test_untrusted_certificate_is_a_clear_error(
    dovecot: Dovecot, tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, dovecot, ca=False))
    daemon = Daemon(tmp_path / "guardmail.yaml", tmp_path / "daemon.log")
    daemon_factory.append(daemon)
    wait_for(lambda: "imap.tls_failed" in daemon.log_text(), what="TLS failure logged")
    assert "certificate of 127.0.0.1 not trusted" in daemon.log_text()
    assert daemon.proc.poll() is None


def test_first_scan_moves_all_offender_mail_in_one_uid_move_and_archives_each_once(
    dovecot: Dovecot, tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(config_text(tmp_path, dovecot))
    box = Mailbox(dovecot)
    offenders = [offender_mail(n) for n in range(5)]
    cleans = [clean_mail(n) for n in range(4)]
    for n, raw in enumerate(offenders):
        box.append(raw)
        if n < len(cleans):
            box.append(cleans[n])
    daemon = start(tmp_path, daemon_factory)
    wait_for(lambda: box.count("Quarantine") == 5, what="five quarantined")
    wait_for(lambda: "imap.caught_up" in daemon.log_text(), what="first scan done")
    assert daemon.stop() == 0
    assert [raw for _, raw in box.messages("Quarantine")] == offenders
    assert box.messages("INBOX") == [(b"", raw) for raw in cleans]  # never \Seen, never moved
    items = evidence(config)
    assert sorted(str(i["sha256"]) for i in items) == sorted(
        hashlib.sha256(raw).hexdigest() for raw in offenders
    )
    assert [str(i["done"]) for i in items] == [
        f"moved UID {uid} to Quarantine (one UID MOVE of 5 UIDs: 1,3,5,7,9)"
        for uid in (1, 3, 5, 7, 9)
    ]
    assert journal_entries(config) == 10  # each archived once, each action journaled once


def test_vault_failing_part_way_through_the_first_scan_moves_nothing_until_it_recovers(
    dovecot: Dovecot, tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(config_text(tmp_path, dovecot))
    offenders = [offender_mail(n) for n in range(3)]
    shas = [hashlib.sha256(raw).hexdigest() for raw in offenders]
    assert shas[0][:2] != shas[1][:2]
    blobs = tmp_path / "var" / "vault" / "default" / "blobs"
    blobs.mkdir(parents=True)
    blocker = blobs / shas[1][:2]  # the second blob's directory: the first blob lands, not it
    blocker.write_text("a file where a blob directory should be")
    box = Mailbox(dovecot)
    for raw in [clean_mail(0), *offenders]:
        box.append(raw)
    daemon = start(tmp_path, daemon_factory)
    wait_for(lambda: "imap.vault_unavailable" in daemon.log_text(), what="vault failure")
    # The batch is one group commit: no blob of it is renamed into place (vault/group.py) ...
    assert not (blobs / shas[0][:2] / shas[0]).exists()
    assert box.count("Quarantine") == 0  # ... and nothing of the batch moved
    assert [raw for _, raw in box.messages("INBOX")] == [clean_mail(0), *offenders]
    blocker.unlink()
    wait_for(lambda: box.count("Quarantine") == 3, timeout=30, what="handled after recovery")
    assert daemon.stop() == 0
    assert box.messages("INBOX") == [(b"", clean_mail(0))]
    assert sorted(str(i["sha256"]) for i in evidence(config)) == sorted(shas)
    assert journal_entries(config) == 6  # the retry archived each item once


def test_without_move_a_batch_is_copied_flagged_and_uid_expunged_as_one_set(
    tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    server = start_dovecot({"alice": "secret"}, tls=True, extra_conf=NO_MOVE)
    try:
        config = tmp_path / "guardmail.yaml"
        config.write_text(config_text(tmp_path, server))
        box = Mailbox(server)
        box.append(CLEAN, flags="(\\Deleted)")  # the user's own pending deletion
        offenders = [offender_mail(n) for n in range(3)]
        for raw in offenders:
            box.append(raw)
        daemon = start(tmp_path, daemon_factory)
        wait_for(lambda: box.count("Quarantine") == 3, what="copied to quarantine")
        wait_for(lambda: box.count("INBOX") == 1, what="offenders expunged from INBOX")
        assert daemon.stop() == 0
        assert box.messages("INBOX") == [(b"\\Deleted", CLEAN)]
        assert [raw for _, raw in box.messages("Quarantine")] == offenders
        done = [str(i["done"]) for i in evidence(config)]
        assert done == [
            f"copied UID {uid} to Quarantine; expunged by UID"
            " (one UID COPY + UID STORE + UID EXPUNGE of 3 UIDs: 2:4)"
            for uid in (2, 3, 4)
        ]
    finally:
        server.stop()


def test_hostile_corpus_offenders_are_archived_exactly_and_moved_the_rest_left_unread(
    dovecot: Dovecot, tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(config_text(tmp_path, dovecot))
    box = Mailbox(dovecot)
    conn = box._conn()
    accepted = []
    try:
        for m in corpus():
            try:
                typ, _ = conn.append("INBOX", None, None, m.raw)
            except imaplib.IMAP4.error:
                typ = "NO"  # Dovecot refuses some shapes (NUL bytes): not in the mailbox at all
            if typ == "OK":
                accepted.append(m)
    finally:
        conn.logout()
    offenders = [m for m in accepted if m.offender]
    assert len(offenders) >= 25  # nearly every shape made it in
    daemon = start(tmp_path, daemon_factory)
    wait_for(
        lambda: box.count("Quarantine") == len(offenders),
        timeout=90,
        what="every offender's message moved",
    )
    assert daemon.proc.poll() is None and "Traceback" not in daemon.log_text()
    inbox = box.messages("INBOX")
    assert len(inbox) == len(accepted) - len(offenders)
    assert all(b"\\Seen" not in flags for flags, _ in inbox)  # judged on PEEKed headers only
    blobs = tmp_path / "var" / "vault" / "default" / "blobs"
    stored = []
    for entry in evidence(config):
        sha = str(entry["sha256"])
        blob = (blobs / sha[:2] / sha).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == sha
        stored.append(blob)
    # The very bytes the server serves for each moved message, one archive each.
    assert sorted(stored) == sorted(raw for _, raw in box.messages("Quarantine"))


class Poller:
    """The person's own mail program: has INBOX SELECTed read-write (taking \\Recent, moving
    Maildir's new/ to cur/, syncing Dovecot's index) and looks at it every 20 ms."""

    def __init__(self, server: Dovecot) -> None:
        self.server = server
        self._stop = threading.Event()
        self.polls = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = self.server.imap("alice")
        try:
            while not self._stop.is_set():
                conn.select("INBOX")
                conn.search(None, "ALL")
                self.polls += 1
                self._stop.wait(0.02)
        finally:
            conn.logout()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def moved_within(conn: imaplib.IMAP4, want: int, *, timeout: float) -> float:
    """Seconds until Quarantine holds ``want`` messages (STATUS, polled every 5 ms)."""
    began = time.monotonic()

    def there() -> bool:
        typ, data = conn.status("Quarantine", "(MESSAGES)")
        assert typ == "OK", data
        return int(data[0].split(b"MESSAGES ")[1].rstrip(b")")) >= want

    while not there():
        assert time.monotonic() - began < timeout, f"message {want} not moved in {timeout} s"
        time.sleep(0.005)
    return time.monotonic() - began


def test_mail_is_moved_at_once_while_another_client_polls_the_selected_inbox(
    dovecot: Dovecot, tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    """Dovecot announces mail that another session synced with the reply to our SEARCH, not in
    the IDLE after it: the watcher searches again rather than wait for the next message."""
    (tmp_path / "guardmail.yaml").write_text(config_text(tmp_path, dovecot))
    daemon = start(tmp_path, daemon_factory)
    conn = dovecot.imap("alice")
    conn.create("Quarantine")
    poller = Poller(dovecot)
    seconds: list[float] = []
    try:
        for n in range(200):  # each as soon as the one before was moved
            conn.append("INBOX", None, None, offender_mail(n))
            seconds.append(moved_within(conn, n + 1, timeout=10))
        for n in range(200, 300, 2):  # pairs: the second arrives while the first is handled
            conn.append("INBOX", None, None, offender_mail(n))
            conn.append("INBOX", None, None, offender_mail(n + 1))
            seconds.append(moved_within(conn, n + 2, timeout=10))
    finally:
        poller.stop()
        conn.logout()
    ordered = sorted(seconds)
    print(
        f"APPEND -> moved, {len(seconds)} waits ({poller.polls} polls by the other client):"
        f" p50 {ordered[len(ordered) // 2]:.3f} s, p99 {ordered[int(len(ordered) * 0.99)]:.3f} s,"
        f" max {ordered[-1]:.3f} s"
    )
    assert Mailbox(dovecot).count("INBOX") == 0
    assert daemon.log_text().count("item.quarantined") == 300


LATER = b"From: Later <later@example.org>\r\nSubject: before\r\n\r\nsent before the report\r\n"


def test_a_new_offender_s_existing_mail_is_moved_at_once_while_other_mail_keeps_arriving(
    dovecot: Dovecot, tmp_path: Path, daemon_factory: list[Daemon]
) -> None:
    """IMAP and Maildir: mail already there from someone who becomes an offender by a config
    edit is judged again at once, not after a quiet spell that a busy mailbox never has."""
    config = tmp_path / "guardmail.yaml"
    maildir = tmp_path / "var" / "Maildir"
    for sub in ("tmp", "new", "cur", ".Quarantine/tmp", ".Quarantine/new", ".Quarantine/cur"):
        (maildir / sub).mkdir(parents=True)
    text = config_text(tmp_path, dovecot) + f"  maildir:\n    - path: {maildir}\n"
    config.write_text(text)
    box = Mailbox(dovecot)
    box.append(LATER)
    (maildir / "new" / "later").write_bytes(LATER)
    daemon = start(tmp_path, daemon_factory)
    wait_for(lambda: "imap.caught_up" in daemon.log_text(), what="existing mail judged clean")
    conn = dovecot.imap("alice")
    stop = threading.Event()

    def busy() -> None:  # someone else's mail, every 200 ms, into both
        n = 0
        while not stop.wait(0.2):
            conn.append("INBOX", None, None, clean_mail(n))
            (maildir / "tmp" / f"busy{n}").write_bytes(clean_mail(n))
            (maildir / "tmp" / f"busy{n}").rename(maildir / "new" / f"busy{n}")
            n += 1

    feeder = threading.Thread(target=busy)
    feeder.start()
    try:
        time.sleep(1)  # well into the busy spell
        edited = text.replace(
            "offenders:\n", "offenders:\n  - name: Later\n    addresses: [later@example.org]\n"
        )
        config.write_text(edited)  # the daemon watches its config: a reload
        wait_for(lambda: "config.reloaded" in daemon.log_text(), what="reload")
        began = time.monotonic()
        wait_for(lambda: box.count("Quarantine") == 1, timeout=10, what="IMAP mail moved")
        wait_for(
            lambda: (maildir / ".Quarantine" / "new" / "later").exists(),
            timeout=10,
            what="Maildir mail moved",
        )
        print(f"both moved {time.monotonic() - began:.2f} s after the reload was logged")
    finally:
        stop.set()
        feeder.join()
        conn.logout()
    assert [raw for _, raw in box.messages("Quarantine")] == [LATER]
    # Logged after the MOVE and the checkpoint's write: the move alone does not mean it is there.
    wait_for(lambda: "imap.rejudged" in daemon.log_text(), timeout=10, what="imap.rejudged")
