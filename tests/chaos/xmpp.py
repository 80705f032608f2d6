"""The crash campaign's XMPP channel: chat messages from the campaign's people (accounts on a real
Prosody) to the watched account, whose person's own client (the resource ``phone``, priority 5)
is sometimes offline, so that messages wait in offline storage while guardmail (priority -1)
finds them only in the server archive (MAM); with the daemon down too, only the archive
catch-up at its next start finds them.

The daemon reaches Prosody through a recording proxy (``tls: none`` on loopback): what the
server sent on each connection is the reference for "byte-exact".

What "acted on" means here (guardmail/channels/xmpp/watch.py): an offender's stanza cannot be
taken back from the person's other clients; it is archived (the bytes the socket delivered: a
carbon, a direct delivery or an archive result) and never acknowledged. ``server_block: true``
puts the ``block`` offender's JID in the server blocklist (the warning goes by e-mail, so nothing
holds it back): from then on Prosody bounces their stanzas (``service-unavailable``) before its
archive and before any client.

After the campaign, for every message sent:
- bounced by the server: only a ``block`` offender's, never archived, never at the phone;
- otherwise at the phone exactly once (quarantine does not withhold: the design);
- clean: never archived;
- an offender's (one already when it was sent): archived exactly once, as bytes the server sent
  on one connection, one action journaled; a sender made an offender later (a hot reload) may
  have been judged clean before: archived at most once (XMPP does not judge past stanzas again);
- the server blocklist holds exactly the ``block`` offender's JID.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from guardmail.storage.sqlite import SQLiteStorage
from tests.chaos.campaign import OFFENDERS, Checks, Message, email_address
from tests.servers.ports import free_ports
from tests.servers.prosody import DOMAIN, Peer, Prosody, start_prosody

VICTIM = f"victim@{DOMAIN}"
_ID = re.compile(rb"""\sid=['"]chaos-(\d+)['"]""")


def jid(person: str) -> str:
    return f"{person}@{DOMAIN}"


class Recorder:
    """A loopback TCP proxy in front of Prosody keeping what the server sent, per connection."""

    def __init__(self, target_port: int) -> None:
        (self.port,) = free_ports(1)
        self.target_port = target_port
        self.connections: list[bytearray] = []
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            record = bytearray()
            self.connections.append(record)
            threading.Thread(target=_pump, args=(conn, upstream, None), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, conn, record), daemon=True).start()

    def sent(self, raw: bytes) -> bool:
        """Whether the server sent exactly ``raw`` on one connection."""
        return any(raw in bytes(c) for c in list(self.connections))

    def close(self) -> None:
        self._server.close()


def _pump(src: socket.socket, dst: socket.socket, record: bytearray | None) -> None:
    try:
        while data := src.recv(65536):
            if record is not None:
                record += data
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class Phone(Peer):
    """The person's own client: a raw c2s session of the watched account."""

    def request(self, payload: str, kind: str) -> tuple[bytes, list[bytes]]:
        """An iq and its answer, and every other stanza read meanwhile (``Peer.iq`` drops
        those: messages the phone received would go uncounted)."""
        ident = uuid.uuid4().hex[:8]
        self.send(f"<iq type='{kind}' id='{ident}'>{payload}</iq>")
        needles = (f"id='{ident}'".encode(), f'id="{ident}"'.encode())
        for _ in range(100):
            for i, raw in enumerate(self._pending):
                if raw.startswith(b"<iq") and any(n in raw for n in needles):
                    others = self._pending[:i] + self._pending[i + 1 :]
                    self._pending = []
                    assert b"type='result'" in raw or b'type="result"' in raw, raw
                    return raw, others
            self._read(0.1)
        raise AssertionError(f"no answer to {payload}")

    def hang_up(self) -> list[bytes]:
        """Close the stream and read until the server closed it: nothing in flight is lost."""
        self.send("</stream:stream>")
        got: list[bytes] = []
        try:
            for _ in range(50):
                got += self.drain(quiet=0.2)
        except (ConnectionError, OSError):
            got += self._pending
        self.sock.close()
        return got


def ids(stanzas: list[bytes], *, errors: bool) -> list[int]:
    """The campaign numbers of the messages (or, ``errors``, the bounces) among ``stanzas``."""
    found = []
    for raw in stanzas:
        head = raw[: raw.find(b">") + 1]
        if not head.startswith(b"<message"):
            continue
        if (b"type='error'" in head or b'type="error"' in head) != errors:
            continue
        if (m := _ID.search(head)) is not None:
            found.append(int(m.group(1)))
    return found


class XmppChannel:
    name = "xmpp"
    points = frozenset({"xmpp.cursor", "xmpp.blocklisted"})
    tenants = ("default",)

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        self.messages: list[Message] = []
        self.offender_then: dict[int, bool] = {}  # an offender already when it was sent
        self.at_phone: Counter[int] = Counter()
        self.bounced: Counter[int] = Counter()
        self.server: Prosody | None = None
        self.recorder: Recorder | None = None
        self.phone: Phone | None = None
        self.senders: dict[str, Peer] = {}

    # --- setup -----------------------------------------------------------------------------

    def start(self, stack: ExitStack) -> None:
        self.server = start_prosody({"victim": "victim-pw"})
        stack.callback(self.server.stop)
        self.recorder = Recorder(self.server.port)
        stack.callback(self.recorder.close)
        stack.callback(self._close_peers)
        (self.root / "xmpp-password").write_text("victim-pw\n")
        self._phone_on()

    def _close_peers(self) -> None:
        for p in [*self.senders.values(), *([self.phone] if self.phone else [])]:
            p.close()

    def sources(self) -> str:
        assert self.recorder is not None
        return (
            "  xmpp:\n"
            f"    - name: victim\n      jid: {VICTIM}\n      host: 127.0.0.1\n"
            f"      port: {self.recorder.port}\n      tls: none\n"
            f"      password_file: {self.root}/xmpp-password\n"
            "      mam_sync_seconds: 0.5\n      ping_seconds: 2\n      timeout_seconds: 5\n"
            "      server_block: true\n"
        )

    def identities(self, person: str) -> dict[str, list[str]]:
        # The address too: the campaign's warning goes by e-mail, to an address the config lists.
        return {"jids": [jid(person)], "addresses": [email_address(person)]}

    # --- traffic ---------------------------------------------------------------------------

    def _sender(self, person: str) -> Peer:
        assert self.server is not None
        if person not in self.senders:
            self.server.register(person, f"{person}-pw")
            self.senders[person] = self.server.peer(person, priority=None)
        return self.senders[person]

    def _offender_now(self, person: str) -> bool:
        late = self.root / "offenders.d" / "late.yaml"
        listed = late.read_text() if late.exists() else ""
        found = re.search(rf"[\s\[,]{re.escape(jid(person))}[,\]]", listed)
        return person in OFFENDERS or found is not None

    def deliver(self, person: str, number: int) -> None:
        raw = (
            f"<message to='{VICTIM}' type='chat' id='chaos-{number}'>"
            f"<body>message {number} {self.rng.getrandbits(64):x}</body></message>"
        ).encode()
        self.offender_then[number] = self._offender_now(person)
        self._sender(person).send(raw)
        self.messages.append(Message(number=number, person=person, raw=raw, key=f"chaos-{number}"))

    def disturb(self) -> None:
        """The person's phone goes offline (its messages wait in offline storage) or back, or
        the person lifts guardmail's server block by hand (guardmail adds it again)."""
        if self.phone is None:
            self._phone_on()
        elif self.rng.random() < 0.3:
            unblock = "".join(
                f"<item jid='{jid(p)}'/>" for p, a in OFFENDERS.items() if a == "block"
            )
            _, others = self.phone.request(
                f"<unblock xmlns='urn:xmpp:blocking'>{unblock}</unblock>", "set"
            )
            self.at_phone.update(ids(others, errors=False))
        else:
            self.at_phone.update(ids(self.phone.hang_up(), errors=False))
            self.phone = None

    def _phone_on(self) -> None:
        assert self.server is not None
        phone = Phone.login(self.server.port, "victim", "victim-pw", resource="phone", priority=5)
        assert isinstance(phone, Phone)
        self.phone = phone

    def _poll(self, quiet: float) -> None:
        if self.phone is not None:
            self.at_phone.update(ids(self.phone.drain(quiet=quiet), errors=False))
        for p in self.senders.values():
            self.bounced.update(ids(p.drain(quiet=quiet / 5), errors=True))

    # --- afterwards ------------------------------------------------------------------------

    def watching(self, log: bytes) -> bool:
        return b"xmpp.caught_up" in log

    def _archived_ids(self) -> Counter[str]:
        path = self.root / "var" / "guardmail.sqlite3"
        if not path.exists():
            return Counter()
        storage = SQLiteStorage(path)
        try:
            with storage.transaction() as tx:
                rows = [json.loads(r.body) for r in tx.journal_rows("default", kind="archived")]
        finally:
            storage.close()
        return Counter(str(e.get("message_id")) for e in rows)

    def pending(self, action: Callable[[str], str | None]) -> bool:
        if self.phone is None:
            self._phone_on()  # its offline messages arrive at login
        self._poll(0.05)
        archived = self._archived_ids()
        for m in self.messages:
            if self.bounced[m.number]:
                continue
            if not self.at_phone[m.number]:
                return True
            if action(m.person) and self.offender_then[m.number] and not archived[m.key]:
                return True
        return False

    def check(self, checks: Checks) -> None:
        if self.phone is None:
            self._phone_on()
        self._poll(0.5)
        assert self.phone is not None and self.recorder is not None
        found: dict[str, list[dict[str, object]]] = {}
        for entry in checks.entries.get("default", []):
            if entry.get("kind") == "archived":
                found.setdefault(str(entry.get("message_id")), []).append(entry)
        for m in self.messages:
            action, mine, n = checks.action(m.person), found.get(m.key, []), m.number
            if self.bounced[n]:
                if action != "block" or mine or self.at_phone[n]:
                    checks.violate(
                        f"xmpp: item {n} of {m.person} bounced by the server, archived "
                        f"{len(mine)}x, at the phone {self.at_phone[n]}x"
                    )
                continue
            if self.at_phone[n] != 1:
                checks.violate(f"xmpp: item {n} of {m.person} at the phone {self.at_phone[n]}x")
            if action is None:
                if mine:
                    checks.violate(f"xmpp: clean item {n} was archived {len(mine)}x")
                continue
            if not self.offender_then[n] and not mine:
                continue  # judged clean before its sender became an offender
            if not checks.offender(self.name, m, found=mine):
                continue
            kept = checks.blob(mine[0])
            if kept is not None and (m.key.encode() not in kept or not self.recorder.sent(kept)):
                checks.violate(f"xmpp: offender item {n}: the vault's bytes were not on the wire")
        answer, others = self.phone.request("<blocklist xmlns='urn:xmpp:blocking'/>", "get")
        self.at_phone.update(ids(others, errors=False))
        listed = set(re.findall(rb"""jid=['"]([^'"]+)['"]""", answer))
        wanted = {jid(p).encode() for p, a in OFFENDERS.items() if a == "block"}
        if listed != wanted:
            checks.violate(f"xmpp: the server blocklist holds {sorted(listed)}, not {wanted}")
        managed = {j.encode() for j in json.loads(self._saved("blocklist") or "[]")}
        if managed != wanted:
            checks.violate(f"xmpp: guardmail says it manages {sorted(managed)}, not {wanted}")

    def _saved(self, name: str) -> str | None:
        storage = SQLiteStorage(self.root / "var" / "guardmail.sqlite3")
        try:
            with storage.transaction() as tx:
                return tx.cursor("default", "xmpp:victim", name)
        finally:
            storage.close()
