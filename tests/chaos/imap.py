"""The crash campaign's IMAP channel: two accounts on real Dovecots watched over IMAPS, mail
delivered into INBOX over LMTP as an MTA would, and the person's own mail client in a second
IMAP session meanwhile.

- ``alice``'s server offers MOVE (guardmail quarantines with one UID MOVE); ``bob``'s does not
  (UID COPY, UID STORE \\Deleted, UID EXPUNGE), so both action paths meet the kills.
- What is compared: Dovecot stores what LMTP got with a ``Return-Path: <sender>`` line in front
  (the Received and Delivered-To lines are turned off, so nothing else differs); an item's bytes
  are that, which is what ``BODY.PEEK[]`` returns and what the vault must hold. A clean message
  that comes back different from its server fails the check, so the expectation itself is
  checked on every clean message.
- The person's client (``disturb``): marks a message \\Seen or \\Flagged (any message, also an
  offender's not yet handled); files a clean message into ``Archive`` or back into INBOX (which
  gives it a new UID there, judged again as new mail); deletes a clean message of its own with
  UID EXPUNGE of that UID alone. It touches no offender message's place, and never issues a bare
  EXPUNGE (it would take what guardmail marked \\Deleted).

After the campaign, from the server's side (every folder of each account, by Message-ID): an
offender's message is in no folder but the quarantine folder, there exactly once and byte-exact
for ``quarantine`` (a \\Deleted but unexpunged copy counts as present); a clean message is
exactly once, byte-identical, in INBOX or where the person filed it, or nowhere if the person
deleted it.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from imapclient import IMAPClient

from tests.chaos.campaign import CLEAN, Checks, Message, email_address
from tests.servers.dovecot import Dovecot, start_dovecot

# Dovecot adds only Return-Path at LMTP delivery with these (and stores CRLF as LF, which
# BODY[] gives back as CRLF: items are written with CRLF).
LMTP_PLAIN = "lmtp_add_received_header = no\nlmtp_hdr_delivery_address = none\n"
# Dovecot's default capability list (2.3.19) without MOVE.
NO_MOVE = """\
protocol imap {
  imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY \
THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT \
CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES \
WITHIN CONTEXT=SEARCH LIST-STATUS BINARY SPECIAL-USE
}
"""
ACCOUNTS = {"alice": LMTP_PLAIN, "bob": LMTP_PLAIN + NO_MOVE}
QUARANTINE = "Quarantine"
ARCHIVE = "Archive"
KEY = re.compile(rb"(?im)^Message-ID: <chaos-(\d+)@imap\.test>\r?$")


class ImapChannel:
    name = "imap"
    points = frozenset({"imap.moved", "imap.copied", "imap.flagged"})
    tenants = ("default",)

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        self.messages: list[Message] = []
        self.servers: dict[str, Dovecot] = {}
        self.account: dict[int, str] = {}  # message number -> the account it went to
        self.deleted: set[int] = set()  # clean messages the person deleted

    def start(self, stack: ExitStack) -> None:
        for account, conf in ACCOUNTS.items():
            server = start_dovecot({account: f"secret-{account}"}, extra_conf=conf, tls=True)
            stack.callback(server.stop)
            self.servers[account] = server
            (self.root / f"imap-{account}-password").write_text(f"secret-{account}\n")

    def sources(self) -> str:
        lines = ["  imap:"]
        for account, server in self.servers.items():
            lines += [
                f"    - name: {account}",
                "      host: 127.0.0.1",
                f"      port: {server.imaps_port}",
                "      tls: implicit",
                f"      ca_file: {server.ca_file}",
                f"      username: {account}",
                f"      password_file: {self.root}/imap-{account}-password",
                f"      quarantine_folder: {QUARANTINE}",
                "      poll_seconds: 0.5",
            ]
        return "\n".join(lines) + "\n"

    def identities(self, person: str) -> dict[str, list[str]]:
        return {"addresses": [email_address(person)]}

    def deliver(self, person: str, number: int) -> None:
        account = self.rng.choice(sorted(self.servers))
        sender = email_address(person)
        sent = (
            f"From: <{sender}>\r\nTo: {account}@example.org\r\n"
            f"Subject: message {number}\r\nMessage-ID: <chaos-{number}@imap.test>\r\n"
            f"X-Chaos: {number}\r\n\r\nbody {number} {self.rng.getrandbits(64):x}\r\n"
        ).encode()
        self.servers[account].deliver(account, sent, sender=sender)  # LMTP
        stored = f"Return-Path: <{sender}>\r\n".encode() + sent
        self.account[number] = account
        self.messages.append(Message(number=number, person=person, raw=stored, key=str(number)))

    # --- the person's own client ---------------------------------------------------------

    @contextmanager
    def _session(self, account: str) -> Iterator[IMAPClient]:
        server = self.servers[account]
        client = IMAPClient("127.0.0.1", server.imap_port, ssl=False, timeout=10)
        try:
            client.login(account, server.users[account])
            yield client
        finally:
            try:
                client.logout()
            except Exception:
                pass

    def disturb(self) -> None:
        account = self.rng.choice(sorted(self.servers))
        what = self.rng.choice(["seen", "flagged", "archive", "unarchive", "delete"])
        with self._session(account) as client:
            if not client.folder_exists(ARCHIVE):
                client.create_folder(ARCHIVE)
            if what in ("seen", "flagged"):
                client.select_folder("INBOX")
                uids = client.search(["ALL"])
                if uids:
                    flag = b"\\Seen" if what == "seen" else b"\\Flagged"
                    client.add_flags([self.rng.choice(uids)], [flag], silent=True)
                return
            folder = ARCHIVE if what == "unarchive" else self.rng.choice(["INBOX", ARCHIVE])
            client.select_folder(folder)
            found = self._clean_uids(client, account)
            if not found:
                return
            number, uid = self.rng.choice(sorted(found.items()))
            if what == "delete":
                client.add_flags([uid], [b"\\Deleted"], silent=True)
                client.uid_expunge([uid])  # its own message alone
                self.deleted.add(number)
            else:  # as a client without MOVE files it; both servers take this
                client.copy([uid], "INBOX" if folder == ARCHIVE else ARCHIVE)
                client.add_flags([uid], [b"\\Deleted"], silent=True)
                client.uid_expunge([uid])

    def _clean_uids(self, client: IMAPClient, account: str) -> dict[int, int]:
        """Message number -> UID of the clean (never an offender's) messages of the folder."""
        clean = {
            m.number
            for m in self.messages
            if m.person in CLEAN and self.account[m.number] == account
        }
        return {n: uid for uid, n, _ in _listing(client, whole=False) if n in clean}

    # --- what the server holds -----------------------------------------------------------

    def watching(self, log: bytes) -> bool:
        return all(f"event=imap.connected account={a}".encode() in log for a in self.servers)

    def folders(self) -> dict[tuple[str, str], list[tuple[int, bytes, bytes]]]:
        """(account, folder) -> (number, flags, bytes) of every campaign message in it."""
        held: dict[tuple[str, str], list[tuple[int, bytes, bytes]]] = {}
        for account in self.servers:
            with self._session(account) as client:
                for _, _, name in client.list_folders():
                    folder = name.decode() if isinstance(name, bytes) else name
                    client.select_folder(folder, readonly=True)
                    held[(account, folder)] = [
                        (n, flags, raw) for _, n, (flags, raw) in _listing(client, whole=True)
                    ]
        return held

    def pending(self, action: Callable[[str], str | None]) -> bool:
        offenders = {m.number for m in self.messages if action(m.person)}
        if not offenders:
            return False
        for account in self.servers:
            with self._session(account) as client:
                client.select_folder("INBOX", readonly=True)
                if any(n in offenders for _, n, _ in _listing(client, whole=False)):
                    return True
        return False

    def check(self, checks: Checks) -> None:
        held = self.folders()
        where: dict[int, Counter[str]] = {}
        copies: dict[int, list[bytes]] = {}
        for (account, folder), found in held.items():
            for number, _flags, raw in found:
                if self.account.get(number) != account:
                    checks.violate(f"imap: item {number} turned up in {account}'s {folder}")
                where.setdefault(number, Counter())[folder] += 1
                copies.setdefault(number, []).append(raw)
        for m in self.messages:
            places = where.get(m.number, Counter())
            count = sum(places.values())
            altered = any(raw != m.raw for raw in copies.get(m.number, []))
            action = checks.action(m.person)
            if action is None:
                checks.clean(self.name, m)
                wanted = 0 if m.number in self.deleted else 1
                if count != wanted or places[QUARANTINE]:
                    checks.violate(
                        f"imap: clean item {m.number} held {dict(places)}, expected {wanted}x"
                    )
                elif altered:
                    checks.violate(f"imap: clean item {m.number} was changed")
                continue
            if not checks.offender(self.name, m):
                continue
            wanted = 1 if action == "quarantine" else 0
            if places[QUARANTINE] != wanted or count != wanted:
                checks.violate(f"imap: offender item {m.number} ({action}) held {dict(places)}")
            elif altered:
                checks.violate(f"imap: offender item {m.number} was changed in quarantine")


def _listing(client: IMAPClient, *, whole: bool) -> list[tuple[int, int, tuple[bytes, bytes]]]:
    """(UID, message number, (flags, bytes or header)) of the campaign's messages in the
    selected folder; \\Deleted ones included (they are still there)."""
    uids = client.search(["ALL"])
    if not uids:
        return []
    part = "BODY.PEEK[]" if whole else "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
    key = b"BODY[]" if whole else b"BODY[HEADER.FIELDS (MESSAGE-ID)]"
    out = []
    for uid, data in client.fetch(uids, ["FLAGS", part]).items():
        raw = data.get(key)
        if raw is None:
            continue  # an unsolicited FETCH (flags changed meanwhile)
        found = KEY.search(raw)
        if found is None:
            continue
        flags = b" ".join(f for f in data.get(b"FLAGS", ()) if f != b"\\Recent")
        out.append((uid, int(found.group(1)), (flags, raw)))
    return out
