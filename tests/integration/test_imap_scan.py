"""The first scan's reader (channels/imap/scan.py) on a real Dovecot: it reads on its own
connection, in UID order, with checkpoints below the first offender not yet handed over, and
leaves the folder exactly as it was."""

import imaplib
import threading
from collections.abc import Iterator

import pytest
from imapclient import IMAPClient

from guardmail.channels.imap.fetch_reply import ITEMS, fetch_headers_reply, read_reply
from guardmail.channels.imap.scan import Chunk, Point, Reader, read_steps
from tests.servers.dovecot import Dovecot, start_dovecot

pytestmark = pytest.mark.integration

MiB = 1 << 20


def message(n: int, offender: bool) -> bytes:
    sender = "stalker@example.net" if offender else f"friend{n}@innocent.example"
    return f"From: {sender}\r\nSubject: {n}\r\n\r\nbody {n}\r\n".encode()


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot({"alice": "secret"})
    try:
        yield server
    finally:
        server.stop()


def client(server: Dovecot) -> IMAPClient:
    c = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=10)
    c.login("alice", "secret")
    return c


def offenders_of(headers: dict[int, tuple[bytes, int]]) -> list[tuple[int, int]]:
    return [(uid, size) for uid, (header, size) in sorted(headers.items()) if b"stalker" in header]


def flags(server: Dovecot) -> list[bytes]:
    conn: imaplib.IMAP4 = server.imap("alice")
    try:
        conn.select("INBOX", readonly=True)
        _, data = conn.uid("FETCH", "1:*", "(FLAGS)")
        # \Recent goes to whichever session sees a message first: it says nothing here.
        return [bytes(d).replace(b"\\Recent", b"") for d in data if isinstance(d, bytes)]
    finally:
        conn.logout()


@pytest.mark.parametrize("ahead", [False, True], ids=["one-fetch-at-a-time", "fetch-ahead"])
def test_the_reader_reads_ahead_on_its_own_examined_connection_and_changes_nothing(
    dovecot: Dovecot, ahead: bool
) -> None:
    """With ``ahead`` the next header FETCH is under way while a batch is judged and while a
    Point is handed over: the steps are the same."""
    raws = [message(n, offender=n in (2, 3, 7, 9)) for n in range(1, 11)]
    conn = dovecot.imap("alice")
    try:
        for raw in raws:
            assert conn.append("INBOX", None, None, raw)[0] == "OK"
    finally:
        conn.logout()
    before = flags(dovecot)
    main = client(dovecot)
    uidvalidity = int(main.select_folder("INBOX")[b"UIDVALIDITY"])
    uids = sorted(main.search(["ALL"]))
    reader = Reader.start(
        client(dovecot),
        folder="INBOX",
        uidvalidity=uidvalidity,
        read=lambda c: read_steps(
            c, uids, offenders_of, batch=3, max_messages=2, max_bytes=1 << 20, ahead=ahead
        ),
        stopping=threading.Event(),
        name="test-reader",
    )
    try:
        steps = list(reader.steps())
    finally:
        reader.close()
        main.logout()
    described = [
        ("chunk", s.uids, [s.whole[u][b"BODY[]"] for u in s.uids])
        if isinstance(s, Chunk)
        else ("point", s.uid)
        for s in steps
    ]
    assert described == [
        ("chunk", [2, 3], [raws[1], raws[2]]),
        ("point", 3),
        ("point", 6),
        ("chunk", [7, 9], [raws[6], raws[8]]),
        ("point", 9),
        ("point", 10),
    ]
    assert all(isinstance(s, Chunk | Point) for s in steps)
    assert flags(dovecot) == before  # EXAMINE and PEEK: not even \Seen


def test_a_reader_on_another_folder_generation_refuses_to_read(dovecot: Dovecot) -> None:
    conn = dovecot.imap("alice")
    try:
        conn.append("INBOX", None, None, message(1, offender=True))
    finally:
        conn.logout()
    second = client(dovecot)
    with pytest.raises(ConnectionError, match="UIDVALIDITY"):
        Reader.start(
            second,
            folder="INBOX",
            uidvalidity=1,  # Dovecot's is the creation time
            read=lambda c: iter(()),
            stopping=threading.Event(),
            name="test-reader",
        )


def test_dovecots_header_reply_is_read_by_the_fast_reader_as_imapclient_reads_it(
    dovecot: Dovecot,
) -> None:
    """The fast reader (fetch_reply.py) takes Dovecot's reply as it is framed (else it would
    only ever fall back), and gives what imapclient gives, for a header written to look like
    IMAP framing too; a flag change someone made meanwhile (an unsolicited FETCH) is read by
    imapclient's parser, as before."""
    hostile = (
        b"From: x@y.example\r\nSubject: ) {12}\r\n* 3 FETCH (UID 9 BODY[HEADER] {2}\r\n\r\nb\r\n"
    )
    conn = dovecot.imap("alice")
    try:
        for n in range(3):
            conn.append("INBOX", None, None, message(n, offender=n == 1))
        conn.append("INBOX", None, None, hostile)
    finally:
        conn.logout()
    c = client(dovecot)
    try:
        c.select_folder("INBOX", readonly=True)
        uids = sorted(c.search("ALL"))
        _, data = c._imap.uid("FETCH", "1:*", ITEMS)
        fast = read_reply(data)
        assert fast is not None
        want = c.fetch(uids, ["BODY.PEEK[HEADER]", "RFC822.SIZE"])
        assert fast == want
        assert fetch_headers_reply(c, uids) == want
        assert fast[uids[-1]][b"BODY[HEADER]"] == hostile[: hostile.index(b"\r\n\r\n") + 4]
        other = client(dovecot)
        try:
            other.select_folder("INBOX")
            other.add_flags([uids[0]], [b"$Seen-elsewhere"])
        finally:
            other.logout()
        # Dovecot announces the change with the next command's reply: imapclient reads it.
        again = fetch_headers_reply(c, uids)
        assert b"$Seen-elsewhere" in again[uids[0]][b"FLAGS"]
        del again[uids[0]][b"FLAGS"]
        assert again == want
    finally:
        c.logout()
