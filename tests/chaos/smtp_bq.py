"""The crash campaign's before-queue SMTP channel: a sending server (a thread of this module)
submits to a real, private Postfix on loopback whose public smtpd proxies every session to the
daemon's filter (``smtpd_proxy_filter``, mode ``before_queue``); the filter answers within the
session and relays what may pass to Postfix's second smtpd, which queues and delivers it.

Tenants as in ``smtp.SmtpChannel`` (jane with a quarantine mailbox, bob with no offenders). There
is no queue in front of the filter: the sender keeps each message until an attempt ends in 250 or
5xx and tries again every 0.2 s otherwise (the daemon down: Postfix answers 451 at RCPT; killed
mid-session: Postfix answers 451 for the filter that never did). Every attempt says who it is in
its EHLO name (``m<number>-a<attempt>.client.chaos.test``), which Postfix writes into its
Received field, so every archived blob and every delivered copy names the attempt that made it.

What a retry means here. A kill between the filter's archive (or its next hop's 250) and its reply
leaves the sender without an answer, and the sender sends the message again: a new SMTP
transaction, with new bytes on the filter's wire (Postfix's Received field: its time, here the
attempt's EHLO name). The vault does not dedupe that (by Message-ID + SHA-256 of the sender's
bytes, say): each archive is the true record of one transaction that carried the offender's
message, byte-exact as the wire gave it; a dedupe key would rest on fields the offender writes (a
reused Message-ID would fold repeated contacts into one, and the count of contacts is evidence);
and the sender's side did send it twice. Clean mail delivered twice by such a retry is RFC 1047's
window, which before-queue cannot close (no queue ID names the message across attempts). So the
campaign holds the final attempt (the one answered 250 or 5xx) to every promise: archived once,
byte-exact, acted on once with its action journaled, delivered once; and accepts an effect of
another attempt (an archive, a copy) only when that attempt is proven cut by a kill: its reply is
Postfix's for a filter that vanished (or the connection dropped), never one the filter wrote.
Each such effect is reported in ``Result.limits``; its archive must still be byte-exact and carry
exactly one action entry.
"""

from __future__ import annotations

import random
import re
import smtplib
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.campaign import OFFENDERS, Checks, Message, email_address
from tests.chaos.smtp import BOB, JANE, QUARANTINE, RETRY, TENANT, SmtpChannel
from tests.servers.postfix import start_postfix, strip_added_headers

# Postfix's Received field in front of the sender's bytes, naming the attempt (no queue ID:
# before-queue, nothing is queued yet when the filter sees it).
RECEIVED = re.compile(
    rb"Received: from (m\d+-a\d+)\.client\.chaos\.test \(localhost \[127\.0\.0\.1\]\)\r\n"
    rb"\tby mx\.gmtest\.test \(Postfix\) with E?SMTP(?:\r\n\tfor <[^>\r\n]+>)?;"
    rb"(?: |\r\n\t)[^\r\n]+\r\n"
)
TAG = re.compile(rb"Received: from (m\d+-a\d+)\.client\.chaos\.test ")
# Filter down or gone mid-session: Postfix's own words, not the filter's.
CUT = ("queue file write error", "Proxy", "proxy")


@dataclass
class Attempt:
    number: int
    tag: str
    code: int | None = None  # the final reply of the attempt; None: connection lost
    text: str = ""
    cut_words: tuple[str, ...] = CUT  # what Postfix says when the filter is down or gone

    @property
    def final(self) -> bool:
        return self.code is not None and (self.code == 250 or 500 <= self.code < 600)

    @property
    def cut(self) -> bool:
        """The session ended without a reply from the filter (it was killed or down)."""
        return self.code is None or (
            400 <= self.code < 500 and any(w in self.text for w in self.cut_words)
        )


@dataclass
class Job:
    message: Message
    sender: str
    recipients: list[str]
    attempts: list[Attempt] = field(default_factory=list)


class SmtpBqChannel(SmtpChannel):
    name = "smtp_bq"
    cut_words: tuple[str, ...] = CUT

    def __init__(self, root: Path, rng: random.Random) -> None:
        super().__init__(root, rng)
        self.jobs: dict[int, Job] = {}
        self._outstanding: list[int] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._busy = False

    def start(self, stack: ExitStack) -> None:
        # No DSN/bounce mail to postmaster for each refused session while the daemon is down.
        self.postfix = start_postfix(
            "before", [JANE, QUARANTINE, BOB], main_cf=RETRY + "notify_classes =\n"
        )
        self._start_rest(stack)

    def _start_rest(self, stack: ExitStack) -> None:
        """Postfix started: its stop, the tenants, the sending server."""
        stack.callback(self.server.stop)
        (self.root / "tenants.d").mkdir(exist_ok=True)
        (self.root / "tenants.d" / "bob.yaml").write_text(f"name: bob\nrecipients: [{BOB}]\n")
        stop = threading.Event()
        sender = threading.Thread(target=self._send, args=(stop,), daemon=True)
        sender.start()
        stack.callback(sender.join, 70)
        stack.callback(self._wake.set)
        stack.callback(stop.set)

    def sources(self) -> str:
        return super().sources().replace("mode: after_queue", "mode: before_queue")

    def deliver(self, person: str, number: int) -> None:
        sender = email_address(person)
        recipients = [JANE, BOB] if self.rng.random() < 0.25 else [JANE]
        raw = (
            f"From: <{sender}>\r\nTo: {', '.join(recipients)}\r\n"
            f"Subject: message {number}\r\nMessage-ID: <chaos-{number}@smtp-bq.test>\r\n"
            f"X-Chaos: {number}\r\n\r\nbody {number} {self.rng.getrandbits(64):x}\r\n"
            ".a line with a leading dot\r\n"
        ).encode()
        message = Message(number=number, person=person, raw=raw, key=str(number))
        self.messages.append(message)
        self.recipients[number] = recipients
        with self._lock:
            self.jobs[number] = Job(message, sender, recipients)
            self._outstanding.append(number)
        self._wake.set()

    # --- the sending server ----------------------------------------------------------------

    def _send(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._lock:
                todo = [self.jobs[n] for n in self._outstanding]
                self._busy = bool(todo)
            for job in todo:
                if stop.is_set():
                    return
                attempt = self._attempt(job)
                if attempt.final:
                    with self._lock:
                        self._outstanding.remove(job.message.number)
            with self._lock:
                self._busy = False
                waiting = bool(self._outstanding)
            if waiting:
                stop.wait(0.2)
            else:
                self._wake.wait(0.5)
                self._wake.clear()

    def _attempt(self, job: Job) -> Attempt:
        m = job.message
        attempt = Attempt(m.number, f"m{m.number}-a{len(job.attempts)}", cut_words=self.cut_words)
        job.attempts.append(attempt)
        client = smtplib.SMTP(timeout=60)
        try:
            client.connect("127.0.0.1", self.server.port)
            client.ehlo(f"{attempt.tag}.client.chaos.test")
            refused = client.sendmail(job.sender, job.recipients, m.raw)
            if refused:  # the filter takes every RCPT; Postfix refuses all or none
                attempt.code, attempt.text = 0, f"partially refused: {refused}"
            else:
                attempt.code = 250
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            attempt.code, attempt.text = code, text.decode(errors="replace")
        except smtplib.SMTPResponseException as exc:
            attempt.code = exc.smtp_code
            said = exc.smtp_error
            attempt.text = said.decode(errors="replace") if isinstance(said, bytes) else said
        except (smtplib.SMTPException, OSError) as exc:
            attempt.text = repr(exc)
        finally:
            with suppress(smtplib.SMTPException, OSError):
                client.close()
        return attempt

    # --- the campaign's questions ----------------------------------------------------------

    def disturb(self) -> None:
        """The postmaster flushes the queue of what the filter relayed (``postqueue -f``)."""
        self.server.flush()

    def pending(self, action: Callable[[str], str | None]) -> bool:
        with self._lock:
            if self._outstanding or self._busy:
                return True
        return super().pending(action)

    def check(self, checks: Checks) -> None:
        for q in self.server.queue():
            reasons = {str(r.get("delay_reason")) for r in q["recipients"]}  # type: ignore[attr-defined]
            checks.violate(f"smtp_bq: {q['queue_id']} still queued in Postfix: {sorted(reasons)}")
        by_body = {m.raw.replace(b"\r\n", b"\n"): m for m in self.messages}
        boxes = {box: self._copies(box, by_body, checks.violate) for box in (JANE, QUARANTINE, BOB)}
        archived = self._blobs(checks)
        for m in self.messages:
            self._check_one(checks, m, archived.get(m.number, []), boxes)

    def _check_one(
        self,
        checks: Checks,
        m: Message,
        archived: list[tuple[str, Message]],
        boxes: dict[str, dict[int, list[str]]],
    ) -> None:
        job = self.jobs[m.number]
        attempts = {a.tag: a for a in job.attempts}
        finals = [a for a in job.attempts if a.final]
        if len(finals) != 1 or finals[0] is not job.attempts[-1]:
            tried = [(a.tag, a.code, a.text[:80]) for a in job.attempts[-3:]]
            checks.violate(f"smtp_bq: item {m.number} never answered 250 or 5xx once: {tried}")
            return
        final = finals[0]
        action = checks.action(m.person)
        late = action is not None and m.person not in OFFENDERS
        mine = [msg for tag, msg in archived if tag == final.tag]
        if action is None or (late and not mine):
            judged: str | None = None
        else:
            judged = action
        to_bob = BOB in self.recipients[m.number]
        # What the final attempt must have done, and said.
        refused = judged == "block" and not to_bob
        if final.code != (550 if refused else 250):
            checks.violate(
                f"smtp_bq: item {m.number} ({m.person}, {judged or 'clean'}) answered "
                f"{final.code} {final.text[:80]!r}"
            )
        want = {
            JANE: int(judged is None),
            QUARANTINE: int(judged == "quarantine"),
            BOB: int(to_bob),
        }
        if judged is not None and len(mine) != 1:
            checks.violate(f"smtp_bq: offender item {m.number} archived {len(mine)}x by its reply")
        if judged is None and mine:
            checks.violate(f"smtp_bq: clean item {m.number} was archived {len(mine)}x")
        for box, count in want.items():
            got = boxes[box].get(m.number, [])
            if got.count(final.tag) != count:
                checks.violate(
                    f"smtp_bq: item {m.number} ({m.person}, {judged or 'clean'}) is in {box} "
                    f"{got.count(final.tag)}x by the attempt answered {final.code}, not {count}x"
                )
        # Every archive is byte-exact and acted on once, whichever attempt made it.
        for _, blob in archived:
            checks.offender(self.name, blob, TENANT)
        if archived and action is None:
            checks.violate(f"smtp_bq: clean item {m.number} was archived {len(archived)}x")
        # The other attempts: each effect only from an attempt proven cut by a kill.
        effects = Counter(tag for tag, _ in archived if tag != final.tag)
        for box in (JANE, QUARANTINE, BOB):
            effects.update(t for t in boxes[box].get(m.number, []) if t != final.tag)
        for tag, n in sorted(effects.items()):
            attempt = attempts.get(tag)
            if attempt is None or not attempt.cut:
                said = "unknown" if attempt is None else f"{attempt.code} {attempt.text[:80]!r}"
                checks.violate(
                    f"smtp_bq: item {m.number}: attempt {tag} archived or delivered it "
                    f"({n}x) but was answered {said}: not a cut session"
                )
            else:
                checks.limits.append(
                    f"smtp_bq: item {m.number} ({m.person}): attempt {tag}, cut by a kill "
                    f"({attempt.code or 'disconnected'} {attempt.text[:48]!r}), had archived or "
                    f"relayed it ({n}x) "
                    "before its reply; the sender sent it again (RFC 1047's window, "
                    "before-queue)"
                )

    def _copies(
        self, box: str, by_body: dict[bytes, Message], violate: Callable[[str], None]
    ) -> dict[int, list[str]]:
        """The attempts whose copies of each message are in ``box`` (new/ and cur/), identical."""
        found: dict[int, list[str]] = {}
        folder = self.server.maildir(box)
        for sub in ("new", "cur"):
            path = folder / sub
            for name in sorted(path.iterdir()) if path.is_dir() else []:
                added, rest = strip_added_headers(name.read_bytes())
                m = by_body.get(rest)
                tags = [t.group(1).decode() for h in added if (t := TAG.match(h))]
                if m is None or len(set(tags)) != 1:
                    violate(f"smtp_bq: {box} holds {name.name}, not as submitted: {rest[:200]!r}")
                else:
                    found.setdefault(m.number, []).append(tags[0])
        return found

    def _blobs(self, checks: Checks) -> dict[int, list[tuple[str, Message]]]:
        """Tenant jane's archived blobs per message number, with the attempt that made each."""
        found: dict[int, list[tuple[str, Message]]] = {}
        for n, raws in self._archived(checks, {}).items():
            for blob in raws:
                m = self.jobs[n].message
                head = RECEIVED.fullmatch(blob.raw[: -len(m.raw)])
                if head is None or not head.group(1).decode().startswith(f"m{n}-"):
                    checks.violate(f"smtp_bq: item {n} archived as {blob.raw[:200]!r}...")
                    continue
                if not checks.archived(blob, TENANT):
                    # Killed between the blob's fsync and its journal entry: not archived, so
                    # not acted on (archive before act); the sender's retry archives it anew.
                    checks.limits.append(
                        f"smtp_bq: item {n}: a blob of attempt {head.group(1).decode()} has no "
                        "journal entry (killed between the blob and its entry; not acted on)"
                    )
                    continue
                found.setdefault(n, []).append((head.group(1).decode(), blob))
        return found
