"""IMAP batches: offenders leave in memory-bounded chunks, and each chunk is acted on with one
command per kind of action, on exactly its UIDs (never a bare EXPUNGE)."""

from typing import Any

import pytest

from guardmail.core.rules import Action
from guardmail.sources.imapact import FolderActions, uid_set
from guardmail.sources.imapbatch import Pending, chunks

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
