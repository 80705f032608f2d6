"""The crash campaign's SMTP channel: mail submitted to a real, private Postfix on loopback, which
hands it after-queue (``content_filter``) to the daemon's SMTP filter and takes back on its
re-injection port what the filter relays.

The filter judges by its tenants' files, not by the main config: the campaign gives this channel
every offender (``rules``) and it writes them as tenant ``jane`` (recipient jane@, quarantine
mailbox jane-quarantine@). A quarter of the messages also go to bob@, protected by no one.
Postfix retries every second and the queue is flushed twice a second, so a message deferred
while the daemon was dead (or killed while handling it) comes back as soon as it listens.

After the campaign, from the servers' side (the Maildirs Postfix delivered to, its queue) and
the vault's: what is compared is the delivered file without the header fields Postfix itself
added in front (Return-Path, X-Original-To, Delivered-To, its own Received fields: see
``strip_added_headers``), against the submitted bytes with CRLF turned to LF (Postfix's
``virtual`` stores LF); what is archived is compared to the bytes DATA gave the filter: Postfix's
one Received field, then exactly the submitted bytes.
- a clean message: in each recipient's Maildir exactly once, identical, never archived, never in
  the quarantine mailbox;
- an offender's message: archived once (byte-exact, one action), not in jane's Maildir, in the
  quarantine mailbox once when quarantined (none when blocked), in bob's once if sent to him;
- a late offender's message (``offenders.d`` grew during the campaign) may have been judged clean
  before the reload reached the filter: either outcome, exactly one of the two, whole (both only
  when the clean copy's attempt was killed in RFC 1047's window, proven by the filter's missing
  record: a known limit);
- Postfix's queue is empty, and no file in any of those Maildirs is unaccounted for.
A second copy is not a violation only when the filter's own record proves it RFC 1047's (see
``_window``): it is then reported in ``Result.limits``.
"""

from __future__ import annotations

import os
import random
import re
import smtplib
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

from guardmail.channels.smtp.relayed import FILE
from tests.chaos.campaign import OFFENDERS, Checks, Message, email_address
from tests.servers.postfix import Postfix, start_postfix, strip_added_headers

TENANT = "jane"
JANE = "jane@example.test"
QUARANTINE = "jane-quarantine@example.test"
BOB = "bob@example.test"
# Retry deferred mail every second or two (defaults: 300 s).
RETRY = "queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n"
# Postfix's own Received field, as the filter gets it in front of the submitted bytes.
RECEIVED = re.compile(
    rb"Received: from client\.chaos\.test \(localhost \[127\.0\.0\.1\]\)\r\n"
    rb"\tby mx\.gmtest\.test \(Postfix\) with E?SMTP id [0-9A-F]+\r\n"
    rb"\tfor <[^>\r\n]+>; [^\r\n]+\r\n"
    rb"|Received: from client\.chaos\.test \(localhost \[127\.0\.0\.1\]\)\r\n"
    rb"\tby mx\.gmtest\.test \(Postfix\) with E?SMTP id [0-9A-F]+;\r\n\t[^\r\n]+\r\n"
)


class SmtpChannel:
    name = "smtp"
    points = frozenset({"smtp.relayed", "smtp.quarantined", "smtp.replied"})
    tenants = (TENANT,)

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        self.messages: list[Message] = []
        self.recipients: dict[int, list[str]] = {}
        self.postfix: Postfix | None = None
        self._flushed = 0.0

    @property
    def server(self) -> Postfix:
        assert self.postfix is not None, "start() first"
        return self.postfix

    def start(self, stack: ExitStack) -> None:
        # Postfix needs every directory above its own to be traversable: not the campaign's
        # private root, its own under /tmp (removed by stop).
        self.postfix = start_postfix("after", [JANE, QUARANTINE, BOB], main_cf=RETRY)
        stack.callback(self.postfix.stop)
        (self.root / "tenants.d").mkdir(exist_ok=True)
        # bob is another customer, with no offenders: his copy of any message goes through. (A
        # recipient of no tenant would be protected by the main config's offenders, which the
        # campaign fills for the other channels.)
        (self.root / "tenants.d" / "bob.yaml").write_text(f"name: bob\nrecipients: [{BOB}]\n")
        # Postfix waits a second or two after a refused connection (the daemon was down), more
        # than a round lets a fresh daemon live: flush the queue twice a second meanwhile.
        stop = threading.Event()
        flusher = threading.Thread(target=self._flush, args=(stop,), daemon=True)
        flusher.start()
        stack.callback(flusher.join, 10)
        stack.callback(stop.set)

    def _flush(self, stop: threading.Event) -> None:
        while not stop.wait(0.5):
            try:
                if self.server.queue():
                    self.server.flush()
            except (OSError, subprocess.SubprocessError):
                pass  # Postfix is being stopped

    def rules(self, offenders: str) -> None:
        """Tenant jane's file with these offenders, written atomically (the filter reloads)."""
        text = (
            f"name: {TENANT}\nrecipients: [{JANE}]\nquarantine_mailbox: {QUARANTINE}\n{offenders}"
        )
        folder = self.root / "tenants.d"
        tmp = folder / ".jane.yaml.tmp"  # a dot-file: not a tenant file
        tmp.write_text(text)
        os.rename(tmp, folder / f"{TENANT}.yaml")

    def sources(self) -> str:
        return (
            "  smtp_filter:\n"
            f"    listen: 127.0.0.1:{self.server.filter_port}\n"
            f"    next_hop: 127.0.0.1:{self.server.reinject_port}\n"
            "    mode: after_queue\n"
            f"    tenants_dir: {self.root}/tenants.d\n"
            "    timeout_seconds: 30\n"
        )

    def identities(self, person: str) -> dict[str, list[str]]:
        return {"addresses": [email_address(person)]}

    def deliver(self, person: str, number: int) -> None:
        sender = email_address(person)
        recipients = [JANE, BOB] if self.rng.random() < 0.25 else [JANE]
        raw = (
            f"From: <{sender}>\r\nTo: {', '.join(recipients)}\r\n"
            f"Subject: message {number}\r\nMessage-ID: <chaos-{number}@smtp.test>\r\n"
            f"X-Chaos: {number}\r\n\r\nbody {number} {self.rng.getrandbits(64):x}\r\n"
            ".a line with a leading dot\r\n"
        ).encode()
        with smtplib.SMTP("127.0.0.1", self.server.port, timeout=60) as client:
            client.ehlo("client.chaos.test")
            refused = client.sendmail(sender, recipients, raw)
        assert not refused, refused  # Postfix itself takes every message
        self.messages.append(Message(number=number, person=person, raw=raw, key=str(number)))
        self.recipients[number] = recipients

    def disturb(self) -> None:
        """The postmaster flushes the queue (``postqueue -f``): deferred mail is tried now."""
        self.server.flush()

    def watching(self, log: bytes) -> bool:
        return b"smtp_filter.listening" in log

    def pending(self, action: Callable[[str], str | None]) -> bool:
        if not self.server.queue():
            return False
        if time.monotonic() - self._flushed > 1.0:
            self._flushed = time.monotonic()
            self.server.flush()
        return True

    def check(self, checks: Checks) -> None:
        queued = self.server.queue()
        for q in queued:
            reasons = {str(r.get("delay_reason")) for r in q["recipients"]}  # type: ignore[attr-defined]
            checks.violate(f"smtp: {q['queue_id']} still queued in Postfix: {sorted(reasons)}")
        by_body = {m.raw.replace(b"\r\n", b"\n"): m for m in self.messages}
        copies = {
            box: self._mailbox(box, by_body, checks.violate) for box in (JANE, QUARANTINE, BOB)
        }
        boxes = {
            box: Counter({n: len(c) for n, c in found.items()}) for box, found in copies.items()
        }
        archived = self._archived(checks, by_body)
        for m in self.messages:
            action = checks.action(m.person)
            late = action is not None and m.person not in OFFENDERS
            mine = archived[m.number]
            to_bob = BOB in self.recipients[m.number]
            if action is None or (late and not mine):
                if mine:
                    checks.violate(f"smtp: clean item {m.number} was archived {len(mine)}x")
                want = {JANE: 1, QUARANTINE: 0, BOB: int(to_bob)}
            else:
                if len(mine) == 1 and not RECEIVED.fullmatch(mine[0].raw[: -len(m.raw)]):
                    checks.violate(
                        f"smtp: offender item {m.number} archived as {mine[0].raw[:200]!r}..."
                    )
                if len(mine) != 1:
                    checks.violate(f"smtp: offender item {m.number} archived {len(mine)}x")
                else:
                    checks.offender(self.name, mine[0], TENANT)
                quarantined = int(action == "quarantine")
                want = {JANE: 0, QUARANTINE: quarantined, BOB: int(to_bob)}
            for box, count in want.items():
                if (
                    count == 1
                    and boxes[box][m.number] >= 2
                    and self._window(box, copies[box][m.number])
                ):
                    n = boxes[box][m.number]
                    times = "twice" if n == 2 else f"{n}x"
                    killed = "killed" if n == 2 else f"killed {n - 1} times"
                    checks.limits.append(
                        f"smtp: item {m.number} ({m.person}) is in {box} {times}: the daemon was "
                        f"{killed} between the next hop's 250 and its record (RFC 1047's window)"
                    )
                elif (
                    late
                    and mine
                    and count == 0
                    and boxes[box][m.number] == 1
                    and self._unrecorded(box, copies[box][m.number][0][1])
                ):
                    # Judged clean and relayed by an attempt killed in the window, judged again
                    # by the retry after the offender was added: both outcomes, one each.
                    checks.limits.append(
                        f"smtp: item {m.number} ({m.person}) reached {box} before its sender "
                        "became an offender, by an attempt killed between the next hop's 250 "
                        "and its record (RFC 1047's window), and was archived on the retry"
                    )
                elif boxes[box][m.number] != count:
                    checks.violate(
                        f"smtp: item {m.number} ({m.person}, {action or 'clean'}) is in "
                        f"{box} {boxes[box][m.number]}x, not {count}x"
                    )

    def _mailbox(
        self, box: str, by_body: dict[bytes, Message], violate: Callable[[str], None]
    ) -> dict[int, list[tuple[float, str]]]:
        """Each message's identical copies in ``box`` (new/ and cur/): when each was written,
        and the queue ID Postfix gave the message as submitted (in its Received field)."""
        found: dict[int, list[tuple[float, str]]] = {}
        folder = self.server.maildir(box)
        for sub in ("new", "cur"):
            path = folder / sub
            for name in sorted(os.listdir(path)) if path.is_dir() else []:
                added, rest = strip_added_headers((path / name).read_bytes())
                m = by_body.get(rest)
                ids = [i for h in added for i in re.findall(rb"with E?SMTP id ([0-9A-F]+)", h)]
                if m is None or not ids:
                    violate(f"smtp: {box} holds {name}, no message as submitted: {rest[:200]!r}")
                else:
                    when = (path / name).stat().st_mtime
                    found.setdefault(m.number, []).append((when, ids[-1].decode()))
        return found

    def _records(self, queue_id: str, box: str) -> list[str]:
        """When the filter recorded relaying ``queue_id``'s copy for ``box``."""
        copy = f"quarantine:{box}" if box == QUARANTINE else f"rcpt:{box}"
        db = sqlite3.connect(self.root / "var" / FILE)
        try:
            rows = db.execute(
                "SELECT at FROM relayed WHERE queue_id = ? AND copy = ?", (queue_id, copy)
            ).fetchall()
        finally:
            db.close()
        return [str(r[0]) for r in rows]

    def _unrecorded(self, box: str, queue_id: str) -> bool:
        """Whether the copy of ``queue_id`` in ``box`` was relayed with no record of it: only an
        attempt killed between the next hop's 250 and the commit leaves that (a recorded copy is
        never judged or relayed again)."""
        return not self._records(queue_id, box)

    def _window(self, box: str, copies: list[tuple[float, str]]) -> bool:
        """Whether every copy of a message in ``box`` but the last is RFC 1047's, proven by the
        filter's own record: the copy was recorded as relayed only once, by the attempt that
        sent the last copy (no earlier record existed that a retry ignored). Two kills can
        land in the window of one message, one retry after the other: each extra copy then
        has its own unrecorded attempt, and still only the last is recorded."""
        ordered = sorted(copies)
        *earlier, (last, queue_id) = ordered
        if any(same != queue_id for _, same in earlier):
            return False  # two messages queued: not a retry
        rows = self._records(queue_id, box)
        if len(rows) != 1:
            return False
        recorded = datetime.fromisoformat(rows[0]).timestamp()
        # A record made by an earlier attempt is older than the next copy by a retry's delay
        # (a daemon restart and Postfix's backoff: over a second); the last attempt's own
        # record is made within milliseconds of its copy.
        return all(recorded > t for t, _ in earlier) and abs(recorded - last) < 0.5

    def _archived(self, checks: Checks, by_body: dict[bytes, Message]) -> dict[int, list[Message]]:
        """Tenant jane's archived blobs, as Messages of their own bytes, per message number."""
        found: dict[int, list[Message]] = {m.number: [] for m in self.messages}
        blobs = self.root / "var" / "vault" / TENANT / "blobs"
        for path in sorted(blobs.glob("*/*")) if blobs.is_dir() else []:
            raw = path.read_bytes()
            numbers = [
                m.number for m in self.messages if raw.endswith(m.raw) and len(raw) > len(m.raw)
            ]
            if len(numbers) != 1:
                checks.violate(f"smtp: blob {path.name} is no one message: {raw[:200]!r}")
                continue
            m = next(m for m in self.messages if m.number == numbers[0])
            found[m.number].append(Message(number=m.number, person=m.person, raw=raw, key=m.key))
        return found
