"""IMAP batches: offenders leave in memory-bounded chunks, and each chunk is acted on with one
command per kind of action, on exactly its UIDs (never a bare EXPUNGE)."""

import hashlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from guardmail.channels.imap import watch
from guardmail.channels.imap.act import FolderActions, uid_set
from guardmail.channels.imap.batch import Folder, Pending, chunks
from guardmail.channels.imap.recovery import StoredCopyMarks
from guardmail.channels.imap.watch import FolderWatcher
from guardmail.config.imap_source import ImapSourceConfig
from guardmail.core.rules import Action, OffenderRule, RuleSet
from guardmail.errors import VaultUnavailable
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Vault
from guardmail.vault.verify import verify_vault
from tests.hostile.corpus import corpus

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([1] * 5, [[0, 1, 2], [3, 4]]),  # at most three messages
        ([6, 5, 4, 1], [[0], [1, 2, 3]]),  # at most ten bytes
        ([3, 40, 3], [[0], [1], [2]]),  # a message larger than the bound comes alone
        ([], []),
    ],
    ids=["by-count", "by-bytes", "oversized-alone", "empty"],
)
def test_chunks_bound_messages_and_bytes(sizes: list[int], expected: list[list[int]]) -> None:
    runs = chunks(list(enumerate(sizes)), max_messages=3, max_bytes=10)
    assert [[uid for uid, _ in run] for run in runs] == expected


def test_pending_lets_only_full_chunks_go_until_told_to_empty() -> None:
    pending = Pending(max_messages=3, max_bytes=64 * MiB)
    pending.add([(10, 1), (11, 1)])
    assert pending.full() == [] and pending.first == 10
    pending.add([(25, 1), (30, 1), (31, 1)])
    assert pending.full() == [[10, 11, 25]]
    assert pending.first == 30  # the checkpoint must stay below it
    pending.add([(40, 100 * MiB)])  # too big to share a chunk: closes the one before it
    assert pending.full() == [[30, 31]]
    assert pending.rest() == [[40]]
    assert not pending


@pytest.mark.parametrize(
    ("uids", "text"),
    [([7], "7"), ([3, 4, 5, 9], "3:5,9"), ([9, 1, 2, 5, 6, 8], "1:2,5:6,8:9"), ([4, 4], "4")],
)
def test_uid_set_is_compact(uids: list[int], text: str) -> None:
    assert uid_set(uids) == text


class FakeClient:
    """Records the commands sent; a bare EXPUNGE fails the test."""

    def __init__(self, capabilities: set[str]) -> None:
        self.capabilities = capabilities
        self.sent: list[tuple[Any, ...]] = []

    def has_capability(self, name: str) -> bool:
        return name in self.capabilities

    def folder_exists(self, name: str) -> bool:
        self.sent.append(("exists?", name))
        return False

    def create_folder(self, name: str) -> None:
        self.sent.append(("create", name))

    def subscribe_folder(self, name: str) -> None:
        self.sent.append(("subscribe", name))

    def move(self, uids: list[int], target: str) -> None:
        self.sent.append(("UID MOVE", list(uids), target))

    def copy(self, uids: list[int], target: str) -> None:
        self.sent.append(("UID COPY", list(uids), target))

    def add_flags(self, uids: list[int], flags: list[bytes], silent: bool) -> None:
        self.sent.append(("UID STORE", list(uids), tuple(flags), silent))

    def uid_expunge(self, uids: list[int]) -> None:
        self.sent.append(("UID EXPUNGE", list(uids)))

    def expunge(self, *args: Any) -> None:
        raise AssertionError("a bare EXPUNGE removes mail others marked \\Deleted")


Q, B = Action.QUARANTINE, Action.BLOCK


def test_a_batch_is_moved_with_one_uid_move_and_blocked_mail_deleted_by_uid() -> None:
    client = FakeClient({"MOVE", "UIDPLUS"})
    actions = FolderActions(folder="INBOX", quarantine="Quarantine")
    done = actions.carry_out(client, [3, 4, 8, 9], [Q, B, Q, Q])
    assert client.sent == [
        ("exists?", "Quarantine"),
        ("create", "Quarantine"),
        ("subscribe", "Quarantine"),
        ("UID MOVE", [3, 8, 9], "Quarantine"),
        ("UID STORE", [4], (b"\\Deleted",), True),
        ("UID EXPUNGE", [4]),
    ]
    assert done == [
        "moved UID 3 to Quarantine (one UID MOVE of 3 UIDs: 3,8:9)",
        "deleted UID 4: expunged by UID",
        "moved UID 8 to Quarantine (one UID MOVE of 3 UIDs: 3,8:9)",
        "moved UID 9 to Quarantine (one UID MOVE of 3 UIDs: 3,8:9)",
    ]
    actions.carry_out(client, [12], [Q])
    assert client.sent[-1] == ("UID MOVE", [12], "Quarantine")  # the folder is not checked again


@pytest.mark.parametrize(
    ("capabilities", "removed"),
    [
        ({"UIDPLUS"}, "expunged by UID"),
        (set(), "marked \\Deleted (no UIDPLUS: left for the mail client to expunge)"),
    ],
)
def test_without_move_a_batch_is_copied_then_flagged_and_expunged_by_uid_as_one_set(
    capabilities: set[str], removed: str
) -> None:
    client = FakeClient(capabilities)
    actions = FolderActions(folder="INBOX", quarantine="Quarantine")
    done = actions.carry_out(client, [5, 6], [Q, Q])
    sent = [c for c in client.sent if c[0].startswith("UID")]
    assert sent[:2] == [
        ("UID COPY", [5, 6], "Quarantine"),
        ("UID STORE", [5, 6], (b"\\Deleted",), True),
    ]
    assert sent[2:] == ([("UID EXPUNGE", [5, 6])] if capabilities else [])
    note = " (one UID COPY + UID STORE + UID EXPUNGE of 2 UIDs: 5:6)"
    assert done == [f"copied UID {u} to Quarantine; {removed}{note}" for u in (5, 6)]


class QuarantineHolding(FakeClient):
    """A server without MOVE whose quarantine folder already holds some messages."""

    def __init__(self, held: list[bytes]) -> None:
        super().__init__({"UIDPLUS"})
        self.held = dict(enumerate(held, start=1))

    def select_folder(self, name: str, readonly: bool = False) -> None:
        self.sent.append(("SELECT", name, readonly))

    def search(self, criteria: list[str]) -> list[int]:
        assert criteria[0] == "LARGER" and criteria[2] == "SMALLER"
        low, high = int(criteria[1]), int(criteria[3])
        return [u for u, raw in self.held.items() if low < len(raw) < high]

    def fetch(self, uids: list[int], parts: list[str]) -> dict[int, dict[bytes, bytes]]:
        return {u: {b"BODY[]": self.held[u]} for u in uids}


def test_without_move_a_uid_copied_before_a_crash_is_not_copied_again(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "state.sqlite3")
    marks = StoredCopyMarks(storage, tenant="t", source="imap:a", folder="INBOX")
    marks.mark([5, 6, 7])  # then the crash, after the COPY of 5 and 6 (7: its copy deleted)
    five, six, seven, same_size = b"five 5", b"six 66", b"seven 7", b"5 evif"
    client = QuarantineHolding([same_size, five, six])
    actions = FolderActions(folder="INBOX", quarantine="Quarantine", marks=marks)
    done = actions.carry_out(client, [5, 6, 7, 8], [Q] * 4, [five, six, seven, b"eight"])
    sent = [c for c in client.sent if c[0].startswith(("UID", "SELECT"))]
    assert sent == [
        ("SELECT", "Quarantine", True),
        ("SELECT", "INBOX", False),
        ("UID COPY", [7, 8], "Quarantine"),
        ("UID STORE", [5, 6, 7, 8], (b"\\Deleted",), True),
        ("UID EXPUNGE", [5, 6, 7, 8]),
    ]
    assert done[0] == "UID 5 already copied to Quarantine before a restart; expunged by UID"
    assert done[2].startswith("copied UID 7 to Quarantine")
    assert marks.marked() == set()  # expunged: nothing left to doubt
    storage.close()


def test_copy_marks_outlive_another_chunk_copied_first_after_a_crash(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "state.sqlite3")
    marks = StoredCopyMarks(storage, tenant="t", source="imap:a", folder="INBOX")
    marks.mark([5, 6])  # copied, then the crash
    client = QuarantineHolding([b"five 5", b"six 66"])
    actions = FolderActions(folder="INBOX", quarantine="Quarantine", marks=marks)
    actions.carry_out(client, [2], [Q], [b"two"])  # a re-judging pass comes first
    assert marks.marked() == {5, 6}
    actions.carry_out(client, [5, 6], [Q, Q], [b"five 5", b"six 66"])
    assert not [c for c in client.sent if c[0] == "UID COPY" and c[1] != [2]]
    assert marks.marked() == set()
    storage.close()


def test_unmarked_uids_are_copied_without_looking_in_the_quarantine(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "state.sqlite3")
    marks = StoredCopyMarks(storage, tenant="t", source="imap:a", folder="INBOX")
    client = QuarantineHolding([b"x"])
    actions = FolderActions(folder="INBOX", quarantine="Quarantine", marks=marks)
    actions.carry_out(client, [3], [Q], [b"x"])
    assert [c[0] for c in client.sent if c[0].startswith(("UID", "SELECT"))] == [
        "UID COPY",
        "UID STORE",
        "UID EXPUNGE",
    ]
    storage.close()


def test_quarantine_folder_watched_itself_leaves_the_mail_in_place() -> None:
    client = FakeClient({"MOVE", "UIDPLUS"})
    actions = FolderActions(folder="Quarantine", quarantine="Quarantine")
    done = actions.carry_out(client, [1, 2], [Q, Q])
    assert client.sent == []
    assert done == [
        f"UID {u} left in Quarantine, where the server's Sieve filed it" for u in (1, 2)
    ]


def test_a_pass_verdict_is_refused_rather_than_silently_dropped() -> None:
    client = FakeClient({"MOVE"})
    actions = FolderActions(folder="INBOX", quarantine="Quarantine")
    with pytest.raises(ValueError, match="'pass'"):
        actions.carry_out(client, [1], [Action.PASS])
    assert client.sent == []


# --- the folder watcher's catch-up, over a fake server and a real vault ----------------------

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RULES = RuleSet([OffenderRule(name="Ex", addresses=("stalker@example.net",))])


def message(uid: int, offender: bool) -> bytes:
    sender = "stalker@example.net" if offender else f"friend{uid}@x.example"
    return f"From: {sender}\r\nSubject: {uid}\r\n\r\nbody {uid}\r\n".encode()


class FakeFolder:
    """One selected folder on a fake server: UID SEARCH, UID FETCH, UID MOVE, as Dovecot answers.

    ``expunge_after_headers``: UIDs someone else expunges right after our header FETCH.
    ``hide_whole``: UIDs the server leaves out of a whole FETCH although they are still there.
    """

    def __init__(self, offenders: set[int], total: int) -> None:
        self.mail = {uid: message(uid, uid in offenders) for uid in range(1, total + 1)}
        self.sent: list[tuple[str, list[int]]] = []
        self.expunge_after_headers: set[int] = set()
        self.hide_whole: set[int] = set()

    def search(self, criteria: list[str]) -> list[int]:
        spec = criteria[1]
        if spec.endswith(":*"):  # answered with the highest UID even when nothing is newer
            low = int(spec[:-2])
            return [u for u in self.mail if u >= low] or ([max(self.mail)] if self.mail else [])
        wanted = {int(u) for u in spec.split(",")}
        return [u for u in self.mail if u in wanted]

    def fetch(self, uids: list[int], parts: list[str]) -> dict[int, dict[bytes, Any]]:
        whole = "BODY.PEEK[]" in parts
        self.sent.append(("FETCH whole" if whole else "FETCH header", list(uids)))
        out: dict[int, dict[bytes, Any]] = {}
        for uid in uids:
            raw = self.mail.get(uid)
            if raw is None or (whole and uid in self.hide_whole):
                continue
            if whole:
                out[uid] = {b"BODY[]": raw, b"FLAGS": (), b"INTERNALDATE": NOW}
            else:
                out[uid] = {b"BODY[HEADER]": raw.split(b"\r\n\r\n")[0], b"RFC822.SIZE": len(raw)}
        if not whole:
            for uid in self.expunge_after_headers:
                self.mail.pop(uid, None)
        return out

    def has_capability(self, name: str) -> bool:
        return name in ("MOVE", "UIDPLUS")

    def folder_exists(self, name: str) -> bool:
        return True

    def move(self, uids: list[int], target: str) -> None:
        self.sent.append(("MOVE", list(uids)))
        for uid in uids:
            del self.mail[uid]


@pytest.fixture
def watcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FolderWatcher]:
    monkeypatch.setattr(watch, "FETCH_BATCH", 4)
    monkeypatch.setattr(watch, "WHOLE_MESSAGES", 2)
    storage = SQLiteStorage(tmp_path / "db.sqlite3")
    vault = Vault(tmp_path / "vault", storage, "t")
    cfg = ImapSourceConfig(
        name="acct", host="127.0.0.1", tls="none", username="u", password_file=tmp_path / "pw"
    )
    pipeline = Pipeline(vault=vault, rules=RULES, clock=lambda: NOW)
    w = FolderWatcher(cfg=cfg, folder="INBOX", tenant="t", pipeline=pipeline, storage=storage)
    assert w.checkpoint.start(7, 1) == (0, True)  # a first run with scan_existing: (7, 0)
    yield w
    storage.close()


def checkpoint(w: FolderWatcher) -> int:
    with w.storage.transaction() as tx:
        point = tx.checkpoint(w.tenant, w.source, w.folder)
    assert point is not None and point.uidvalidity == 7
    return point.last_uid


def test_offenders_gather_across_header_batches_into_full_chunks_then_the_rest(
    watcher: FolderWatcher,
) -> None:
    folder = FakeFolder(offenders={2, 7, 8, 11}, total=12)
    assert watcher._catch_up(folder, 7, 0) == 12
    assert folder.sent == [
        ("FETCH header", [1, 2, 3, 4]),
        ("FETCH header", [5, 6, 7, 8]),
        ("FETCH whole", [2, 7]),  # a full chunk leaves as soon as it is full
        ("MOVE", [2, 7]),
        ("FETCH header", [9, 10, 11, 12]),
        ("FETCH whole", [8, 11]),
        ("MOVE", [8, 11]),
    ]
    assert checkpoint(watcher) == 12
    archived = watcher.pipeline.vault.rows(kind="archived")
    assert [str(r.source_ref).rpartition(";")[2] for r in archived] == [
        "UID=2",
        "UID=7",
        "UID=8",
        "UID=11",
    ]


def test_vault_failure_keeps_the_checkpoint_below_the_first_offender_not_yet_moved(
    watcher: FolderWatcher,
) -> None:
    folder = FakeFolder(offenders={2, 3, 6, 10}, total=12)
    vault = watcher.pipeline.vault
    shas = {uid: hashlib.sha256(folder.mail[uid]).hexdigest() for uid in (2, 3, 6, 10)}
    assert shas[6][:2] not in (shas[2][:2], shas[3][:2])
    vault.blobs.root.mkdir(parents=True)
    blocker = vault.blobs.root / shas[6][:2]
    blocker.write_text("a file where a blob directory should be")
    with pytest.raises(VaultUnavailable):
        watcher._catch_up(folder, 7, 0)
    assert ("MOVE", [2, 3]) in folder.sent and 6 in folder.mail and 10 in folder.mail
    assert checkpoint(watcher) == 5  # past the moved chunk and clean 4, 5; below 6
    assert len(vault.rows()) == 4  # 2 and 3: archived and acted on; nothing of 6, 10
    blocker.unlink()
    folder.sent.clear()
    assert watcher._catch_up(folder, 7, checkpoint(watcher)) == 12
    assert ("MOVE", [6, 10]) in folder.sent and checkpoint(watcher) == 12
    assert [r.kind for r in vault.rows()] == ["archived"] * 2 + ["action"] * 2 + [
        "archived"
    ] * 2 + ["action"] * 2
    assert verify_vault(vault) == []


def test_a_message_expunged_by_someone_else_between_the_fetches_is_skipped(
    watcher: FolderWatcher,
) -> None:
    folder = FakeFolder(offenders={2, 3}, total=4)
    folder.expunge_after_headers = {3}
    assert watcher._catch_up(folder, 7, 0) == 4
    assert ("MOVE", [2]) in folder.sent and checkpoint(watcher) == 4
    assert len(watcher.pipeline.vault.rows(kind="archived")) == 1


def test_a_message_the_server_leaves_out_but_still_has_stops_the_catch_up(
    watcher: FolderWatcher,
) -> None:
    folder = FakeFolder(offenders={2, 3}, total=4)
    folder.hide_whole = {3}
    with pytest.raises(ConnectionError, match=r"did not return UIDs \[3\]"):
        watcher._catch_up(folder, 7, 0)
    assert checkpoint(watcher) == 0  # 2 and 3 judged, not handled: judged again on retry
    assert not any(cmd == "MOVE" for cmd, _ in folder.sent)


def test_hostile_messages_from_the_offender_are_archived_exactly_and_moved(
    watcher: FolderWatcher,
) -> None:
    messages = corpus()
    folder = FakeFolder(offenders=set(), total=0)
    folder.mail = {uid: m.raw for uid, m in enumerate(messages, start=1)}
    assert watcher._catch_up(folder, 7, 0) == len(messages)
    left = {folder.mail[uid] for uid in folder.mail}
    assert left == {m.raw for m in messages if not m.offender}
    vault = watcher.pipeline.vault
    stored = [vault.blobs.get(str(r.sha256)) for r in vault.rows(kind="archived")]
    assert sorted(stored) == sorted(m.raw for m in messages if m.offender)


@pytest.mark.parametrize("step", ["probe", "item"])
def test_a_bug_building_one_item_leaves_that_message_and_handles_the_others(
    watcher: FolderWatcher,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    step: str,
) -> None:
    folder = FakeFolder(offenders={1, 2, 3}, total=4)
    # Its own sender fields: the scan's memo judges each sender's once (memo.py), so a bug in
    # reading a message meets the first message of those fields.
    folder.mail[2] = b"From: S <stalker@example.net>\r\nSubject: 2\r\n\r\nbody 2\r\n"
    real = getattr(Folder, step)

    def failing_on_uid_2(self: Folder, uid: int, *args: Any) -> Any:
        if uid == 2:
            raise RuntimeError("a bug in item building")
        return real(self, uid, *args)

    monkeypatch.setattr(Folder, step, failing_on_uid_2)
    with caplog.at_level(logging.ERROR, logger="guardmail"):
        assert watcher._catch_up(folder, 7, 0) == 4
    assert sorted(folder.mail) == [2, 4]  # the offender it could not read is left in place
    assert [r.getMessage() for r in caplog.records] == ["imap.item_failed"]
    assert len(watcher.pipeline.vault.rows(kind="archived")) == 2


class LateSync(FakeFolder):
    """Dovecot with another session syncing INBOX: a SEARCH runs on the old view of the folder,
    and the mail it did not see is announced (``* n EXISTS``) with the same reply. Here the
    next message arrives just as a search finds nothing new."""

    def __init__(self, offenders: set[int], total: int, arriving: list[bytes]) -> None:
        super().__init__(offenders, total)
        self.arriving = arriving
        self.uidnext = total + 1
        self._imap = SimpleNamespace(untagged_responses={})

    def search(self, criteria: list[str]) -> list[int]:
        found = super().search(criteria)
        if self.arriving and not [u for u in found if u >= int(criteria[1].split(":")[0])]:
            self.mail[self.uidnext] = self.arriving.pop(0)
            self.uidnext += 1
            self._imap.untagged_responses.setdefault("EXISTS", []).append(b"1")
        return found


def test_mail_announced_with_the_last_search_reply_is_searched_for_before_idle(
    watcher: FolderWatcher,
) -> None:
    folder = LateSync(offenders={1}, total=1, arriving=[message(2, True), message(3, True)])
    assert watcher._catch_up(folder, 7, 0) == 3
    assert [cmd for cmd in folder.sent if cmd[0] == "MOVE"] == [("MOVE", [u]) for u in (1, 2, 3)]
    assert folder._imap.untagged_responses == {}  # nothing left for IDLE to miss


class Ranged(FakeFolder):
    """Also answers ``UID SEARCH UID 1:n``."""

    def search(self, criteria: list[str]) -> list[int]:
        low, sep, high = criteria[1].partition(":")
        if sep and high != "*":
            return [u for u in self.mail if int(low) <= u <= int(high)]
        return super().search(criteria)


def test_a_rejudge_moves_existing_mail_of_a_new_offender_and_keeps_the_checkpoint(
    watcher: FolderWatcher,
) -> None:
    folder = Ranged(offenders={2, 4}, total=6)
    watcher.checkpoint.save(7, 5)  # 1-5 judged before the offender was known; 6 not yet
    watcher.rejudge()  # a reload, from the event loop's thread
    assert watcher._rejudge.take()
    watcher._rejudge_existing(folder, 7, 5)
    assert [c for c in folder.sent if c[0] == "MOVE"] == [("MOVE", [2, 4])]
    assert checkpoint(watcher) == 5  # 6 is new mail: the catch-up's, not the rejudge's
    assert not watcher._rejudge.is_set()


def test_a_rejudge_the_vault_refused_is_asked_for_again(watcher: FolderWatcher) -> None:
    folder = Ranged(offenders={3}, total=3)
    vault = watcher.pipeline.vault
    vault.blobs.root.mkdir(parents=True)
    sha = hashlib.sha256(folder.mail[3]).hexdigest()
    (vault.blobs.root / sha[:2]).write_text("a file where a blob directory should be")
    with pytest.raises(VaultUnavailable):
        watcher._rejudge_existing(folder, 7, 3)
    assert watcher._rejudge.is_set() and 3 in folder.mail  # done again after the vault retry


def test_gmail_s_message_id_and_labels_are_kept_in_the_item_s_metadata() -> None:
    import json
    from datetime import UTC, datetime

    from guardmail.channels.imap.batch import WHOLE, Folder

    raw = b"From: stalker@example.net\r\nSubject: x\r\n\r\nbody\r\n"
    whole = {
        WHOLE: raw,
        b"FLAGS": (b"\\Seen",),
        b"X-GM-MSGID": 1278455344230334865,
        b"X-GM-LABELS": ("\\Inbox", "Famille/Écoles"),
    }
    folder = Folder(tenant="t", account="gmail", folder="INBOX", uidvalidity=7)
    meta = dict(folder.item(3, whole, datetime.now(UTC)).meta)
    assert meta["gmail_msgid"] == "1278455344230334865"
    assert json.loads(meta["gmail_labels"]) == ["\\Inbox", "Famille/Écoles"]
    del whole[b"X-GM-MSGID"]
    assert "gmail_msgid" not in dict(folder.item(3, whole, datetime.now(UTC)).meta)


# --- a long catch-up read on a second connection (scan.py) -------------------------------------


class SecondConnection(FakeFolder):
    """The reader's own connection to the same folder: it sees the same mail, and must never
    change it."""

    def __init__(self, main: FakeFolder, uidvalidity: int = 7) -> None:
        super().__init__(set(), 0)
        self.mail = main.mail
        self.uidvalidity = uidvalidity
        self.selected: tuple[str, bool] | None = None
        self.logged_out = False

    def select_folder(self, name: str, readonly: bool = False) -> dict[bytes, int]:
        self.selected = (name, readonly)
        return {b"UIDVALIDITY": self.uidvalidity}

    def move(self, uids: list[int], target: str) -> None:
        raise AssertionError("the reader moved mail")

    def socket(self) -> SimpleNamespace:
        return SimpleNamespace(shutdown=lambda how: None)

    def logout(self) -> None:
        self.logged_out = True


def reading_on(
    monkeypatch: pytest.MonkeyPatch, folder: FakeFolder, uidvalidity: int = 7
) -> SecondConnection:
    reader = SecondConnection(folder, uidvalidity)
    monkeypatch.setattr(watch, "connect", lambda cfg: reader)
    return reader


def test_a_long_catch_up_reads_on_a_second_connection_and_moves_on_the_first(
    watcher: FolderWatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = FakeFolder(offenders={2, 7, 8, 11}, total=12)
    reader = reading_on(monkeypatch, folder)
    assert watcher._catch_up(folder, 7, 0) == 12
    # The next batch's headers are asked for before a batch is judged (read ahead), and read
    # before the chunk the batch filled is fetched whole.
    assert reader.sent == [
        ("FETCH header", [1, 2, 3, 4]),
        ("FETCH header", [5, 6, 7, 8]),
        ("FETCH header", [9, 10, 11, 12]),
        ("FETCH whole", [2, 7]),
        ("FETCH whole", [8, 11]),
    ]
    assert folder.sent == [("MOVE", [2, 7]), ("MOVE", [8, 11])]
    assert reader.selected == ("INBOX", True) and reader.logged_out  # EXAMINEd, then closed
    assert checkpoint(watcher) == 12
    archived = watcher.pipeline.vault.rows(kind="archived")
    assert [str(r.source_ref).rpartition(";")[2] for r in archived] == [
        "UID=2",
        "UID=7",
        "UID=8",
        "UID=11",
    ]


def test_read_ahead_the_vault_failing_keeps_the_checkpoint_below_the_first_unmoved_offender(
    watcher: FolderWatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = FakeFolder(offenders={2, 3, 6, 10}, total=12)
    reader = reading_on(monkeypatch, folder)
    vault = watcher.pipeline.vault
    sha = hashlib.sha256(folder.mail[6]).hexdigest()
    vault.blobs.root.mkdir(parents=True)
    (vault.blobs.root / sha[:2]).write_text("a file where a blob directory should be")
    with pytest.raises(VaultUnavailable):
        watcher._catch_up(folder, 7, 0)
    # The reader had read past 6 (headers 9-12); the checkpoint did not follow it.
    assert folder.sent == [("MOVE", [2, 3])] and 6 in folder.mail and 10 in folder.mail
    assert checkpoint(watcher) == 5
    assert reader.logged_out


@pytest.mark.parametrize("fault", ["whole-missing", "uidvalidity"])
def test_a_reader_failure_reaches_the_watcher_and_nothing_unread_is_moved(
    watcher: FolderWatcher, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    folder = FakeFolder(offenders={2, 3, 6}, total=8)
    reader = reading_on(monkeypatch, folder, uidvalidity=8 if fault == "uidvalidity" else 7)
    reader.hide_whole = {6}
    with pytest.raises(ConnectionError):
        watcher._catch_up(folder, 7, 0)
    moved = [uids for cmd, uids in folder.sent if cmd == "MOVE"]
    assert moved == ([] if fault == "uidvalidity" else [[2, 3]])
    assert checkpoint(watcher) == (0 if fault == "uidvalidity" else 5)
    assert 6 in folder.mail and reader.logged_out


def test_a_scans_chunk_logs_one_info_line_a_message_and_one_for_its_archiving(
    watcher: FolderWatcher, caplog: pytest.LogCaptureFixture
) -> None:
    """A first scan's chunk (two here) logs each message's outcome at INFO (the operator's
    line a blocked message), its archiving once; each item.archived is at DEBUG."""
    folder = FakeFolder(offenders={2, 7, 8}, total=12)
    with caplog.at_level(logging.INFO, logger="guardmail"):
        assert watcher._catch_up(folder, 7, 0) == 12
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert info.count("item.quarantined") == 3
    assert info.count("items.archived") == 1  # [2, 7]; [8] alone logs its item.archived
    assert info.count("item.archived") == 1
    assert len(info) == 3 + 1 + 1 + 2  # and imap.caught_up, imap.reader_unavailable (fake)
