"""The crash campaign (issue 23): real traffic through a real ``guardmail run``, SIGKILLs at
random instants and at every crash point of ``guardmail.faults``, then the promises checked from
the outside: the servers' side, the vault, the SMTP sink that receives the warning.

Used by ``tests/integration/test_chaos.py`` (a short run) and ``bench/chaos.py`` (a long one).

The campaign is the same for every channel; a channel (``tests/chaos/maildir.py``, ...) plugs in
through ``Channel``: it starts its servers, names its sources and its senders' identities,
delivers items, disturbs them as the person's own client would, and checks them afterwards. Any
set of channels runs at once against one daemon.

Each round starts the daemon, delivers a few items on random channels (offenders' and clean),
now and then adds an offender to ``offenders.d/late.yaml`` (that sender's items may already have
arrived, judged clean until then; half the time once the daemon watches, a hot reload, else at
once, which a daemon still starting reads at start), and kills it: at a crash point
(``GUARDMAIL_FAULT=POINT:COUNT``) or at a random instant. A final run without faults lets it
finish. Then, for every item delivered:
- an offender's item is archived exactly once, byte-exact, acted on as the channel defines, and
  its action is journaled once;
- a clean item is delivered exactly once, untouched, and never archived;
- no offender received more than one warning;
- ``guardmail evidence verify`` passes.
A violation names the round and the seed that replays the campaign.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from guardmail.storage.sqlite import SQLiteStorage
from tests.servers.smtp_sink import SmtpSink

REPO = Path(__file__).resolve().parents[2]
OFFENDERS = {"stalker": "quarantine", "worse": "block"}
CLEAN = ("friend", "mum")
DOMAINS = {
    "stalker": "example.net",
    "worse": "example.org",
    "friend": "innocent.example",
    "mum": "family.example",
}
# Crash points every channel reaches (the vault and the pipeline); channels add their own.
COMMON_POINTS = frozenset(
    {"vault.blob", "pipeline.archived", "pipeline.acted", "pipeline.journaled"}
)
# Where each channel lives: "module:class", imported only when a campaign uses it.
CHANNELS = {
    "maildir": "tests.chaos.maildir:MaildirChannel",
    "imap": "tests.chaos.imap:ImapChannel",
    "smtp": "tests.chaos.smtp:SmtpChannel",
    "xmpp": "tests.chaos.xmpp:XmppChannel",
    "smtp_bq": "tests.chaos.smtp_bq:SmtpBqChannel",
    "smtp_milter": "tests.chaos.smtp_milter:SmtpMilterChannel",
}
# Channels that are modes of one daemon source (``sources.smtp_filter`` is one per daemon): a
# campaign takes at most one of each group, and ``all`` the first.
ALTERNATIVES = (("smtp", "smtp_bq", "smtp_milter"),)


def every_channel() -> tuple[str, ...]:
    """``--channels all``: every channel, one mode of each source."""
    later = {name for group in ALTERNATIVES for name in group[1:]}
    return tuple(name for name in CHANNELS if name not in later)


WARNING = """\
warning:
  send: on_first_block
  from: "Jane Victim <jane@example.org>"
  subject: Stop contacting me
  template_file: {root}/warning.txt.j2
  law: "the Protection from Harassment Act 1997"
  smtp:
    host: 127.0.0.1
    port: {port}
    tls: starttls
    ca_file: {ca}
    username: victim
    password_file: {root}/smtp-password
"""


def email_address(person: str) -> str:
    """The e-mail address a person of the campaign writes from."""
    return f"{person}@{DOMAINS.get(person, 'late.example')}"


@dataclass
class Message:
    number: int
    person: str
    raw: bytes
    key: str  # how its channel finds it again (a Maildir unique name, a Message-ID, ...)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


@dataclass
class Result:
    seed: int
    channels: tuple[str, ...] = ()
    rounds: int = 0
    kills: int = 0
    points: Counter[str] = field(default_factory=Counter)  # crash points that killed
    reached: Counter[str] = field(default_factory=Counter)  # crash points passed, all rounds
    messages: Counter[str] = field(default_factory=Counter)  # items delivered, per channel
    warnings: int = 0
    violations: list[str] = field(default_factory=list)
    # What a channel shows to be a known limit, not a broken promise (RFC 1047's window).
    limits: list[str] = field(default_factory=list)

    def summary(self) -> str:
        points = ", ".join(f"{p} {n}" for p, n in sorted(self.points.items())) or "none"
        items = ", ".join(f"{c} {n}" for c, n in sorted(self.messages.items())) or "none"
        return (
            f"seed {self.seed} [{' + '.join(self.channels)}]: {self.rounds} rounds, "
            f"{self.kills} kills (at crash points: {points}), items {items}, "
            f"{self.warnings} warnings sent, {len(self.violations)} violations"
            + (f", {len(self.limits)} known limits hit" if self.limits else "")
        )


class Checks:
    """What the vault says after the campaign, for the channels' checks."""

    def __init__(
        self,
        entries: dict[str, list[dict[str, object]]],
        vault: Path,
        action: Callable[[str], str | None],
        violate: Callable[[str], None],
    ) -> None:
        self._vault = vault
        self.entries = entries  # per tenant, for channels whose items are found by other keys
        self.action = action
        self.violate = violate
        self.limits: list[str] = []  # see Result.limits; a channel appends what it proves
        self._archived: dict[tuple[str, str], list[dict[str, object]]] = {}
        self._actions: Counter[tuple[str, object]] = Counter()
        for tenant, rows in entries.items():
            for entry in rows:
                if entry.get("kind") == "archived":
                    key = (tenant, str(entry.get("sha256")))
                    self._archived.setdefault(key, []).append(entry)
                elif entry.get("kind") == "action":
                    self._actions[(tenant, entry.get("archived_seq"))] += 1

    def archived(self, message: Message, tenant: str = "default") -> list[dict[str, object]]:
        return self._archived.get((tenant, message.sha256), [])

    def clean(self, channel: str, message: Message, tenant: str = "default") -> None:
        """A clean item: never archived (its delivery is the channel's to check)."""
        if self.archived(message, tenant):
            self.violate(f"{channel}: clean item {message.number} was archived")

    def blob(self, entry: dict[str, object], tenant: str = "default") -> bytes | None:
        """The vault's bytes of an archived entry, if present and matching its SHA-256."""
        sha = str(entry.get("sha256"))
        path = self._vault / tenant / "blobs" / sha[:2] / sha
        if not path.exists():
            return None
        raw = path.read_bytes()
        return raw if hashlib.sha256(raw).hexdigest() == sha else None

    def offender(
        self,
        channel: str,
        message: Message,
        tenant: str = "default",
        *,
        found: list[dict[str, object]] | None = None,
    ) -> bool:
        """An offender's item: archived once, byte-exact, one action journaled. False when not
        archived at all (the channel's own checks then have nothing to add). ``found``: its
        archived entries, for a channel whose archived bytes are not the bytes it sent (XMPP:
        the server's delivery); the channel then checks those bytes itself."""
        mine = self.archived(message, tenant) if found is None else found
        if len(mine) != 1:
            self.violate(f"{channel}: offender item {message.number} archived {len(mine)}x")
            return bool(mine)
        kept = self.blob(mine[0], tenant)
        if kept is None or (found is None and kept != message.raw):
            self.violate(f"{channel}: offender item {message.number}: blob missing or altered")
        acted = self._actions[(tenant, mine[0]["seq"])]
        if acted != 1:
            self.violate(f"{channel}: offender item {message.number}: {acted} actions journaled")
        return True


class Channel(Protocol):
    """One channel of the campaign, made with ``(root, rng)``."""

    name: str
    points: frozenset[str]  # crash points of guardmail.faults this channel reaches
    tenants: tuple[str, ...]  # the vault tenants its items are archived under
    messages: list[Message]

    def start(self, stack: ExitStack) -> None:
        """Start this channel's servers (closed by ``stack``)."""

    def sources(self) -> str:
        """Its entries under ``sources:`` in the daemon's config, indented two spaces."""

    def identities(self, person: str) -> dict[str, list[str]]:
        """An offender's identities on this channel, as offender config keys (addresses: [...])."""

    def deliver(self, person: str, number: int) -> None:
        """Send item ``number`` from ``person`` (and remember it in ``messages``)."""

    def disturb(self) -> None:
        """What the person's own client does meanwhile (reads, flags, moves)."""

    def watching(self, log: bytes) -> bool:
        """Whether the daemon's log (this run's part) says this channel is watching."""

    def pending(self, action: Callable[[str], str | None]) -> bool:
        """Whether an offender's item still waits to be acted on, seen from the server."""

    def check(self, checks: Checks) -> None:
        """Every promise about this channel's items, from the server's side and the vault's."""


def make_channel(name: str, root: Path, rng: random.Random) -> Channel:
    module, _, cls = CHANNELS[name].partition(":")
    made: Channel = getattr(importlib.import_module(module), cls)(root, rng)
    return made


class Campaign:
    def __init__(
        self,
        root: Path,
        *,
        seed: int,
        channels: tuple[str, ...] = ("maildir",),
        log: Callable[[str], None] = print,
    ) -> None:
        self.root = root
        self.seed = seed
        self.rng = random.Random(seed)
        self.reload_rng = random.Random(seed + 1)  # apart: self.rng's draws stay those of before
        self.log = log
        for group in ALTERNATIVES:
            if len(set(group) & set(channels)) > 1:
                raise ValueError(f"channels {', '.join(group)}: one daemon runs one of them")
        self.channels = [make_channel(name, root, self.rng) for name in channels]
        self.points = sorted(COMMON_POINTS.union(*(c.points for c in self.channels)))
        self.late: list[str] = []  # offenders added during the campaign (quarantine)
        self.delivered = 0
        self.result = Result(seed=seed, channels=tuple(channels))

    def action(self, person: str) -> str | None:
        """What the final configuration does to ``person``'s items (None: clean)."""
        return OFFENDERS.get(person) or ("quarantine" if person in self.late else None)

    def _identities(self, person: str) -> list[str]:
        merged: dict[str, list[str]] = {}
        for channel in self.channels:
            for key, values in channel.identities(person).items():
                merged.setdefault(key, [])
                merged[key] += [v for v in values if v not in merged[key]]
        return [f"    {key}: [{', '.join(values)}]" for key, values in sorted(merged.items())]

    def add_late_offender(self) -> None:
        """One more offender in offenders.d/late.yaml, written atomically: a hot reload."""
        self.late.append(f"late{len(self.late)}")
        lines = ["offenders:"]
        for n, person in enumerate(self.late):
            lines += [f"  - name: Late {n}", *self._identities(person), "    action: quarantine"]
        folder = self.root / "offenders.d"
        folder.mkdir(exist_ok=True)
        tmp = folder / ".late.yaml.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        os.rename(tmp, folder / "late.yaml")
        self.rules_changed()

    def rules_changed(self) -> None:
        """Give every offender now configured (main config and late.yaml), as an ``offenders:``
        YAML block, to the channels whose items are judged by rules of their own: an SMTP
        filter judges by its tenants' files, not by the main config (a channel's optional
        ``rules(text)``)."""
        lines = ["offenders:"]
        people = [(p, a, p.title()) for p, a in OFFENDERS.items()]
        people += [(p, "quarantine", f"Late {n}") for n, p in enumerate(self.late)]
        for person, action, name in people:
            lines += [f"  - name: {name}", *self._identities(person), f"    action: {action}"]
        for channel in self.channels:
            hook = getattr(channel, "rules", None)
            if hook is not None:
                hook("\n".join(lines) + "\n")

    # --- setup and traffic ---------------------------------------------------------------

    def write_config(self, sink: SmtpSink) -> Path:
        shutil.copy(REPO / "config" / "warning.txt.j2", self.root / "warning.txt.j2")
        (self.root / "smtp-password").write_text("secret\n")
        lines = [f"state_dir: {self.root}/var", "offenders:"]
        for person, action in OFFENDERS.items():
            lines += [f"  - name: {person.title()}", *self._identities(person)]
            lines.append(f"    action: {action}")
        lines.append(WARNING.format(root=self.root, port=sink.port, ca=sink.ca_file).rstrip())
        lines.append("sources:")
        lines += [c.sources().rstrip("\n") for c in self.channels]
        config = self.root / "guardmail.yaml"
        config.write_text("\n".join(lines) + "\n")
        self.rules_changed()
        return config

    def deliver(self) -> None:
        upcoming = f"late{len(self.late)}"  # an offender only from a later round
        person = self.rng.choice([*OFFENDERS, *CLEAN, *self.late[-2:], upcoming])
        self.rng.choice(self.channels).deliver(person, self.delivered)
        self.delivered += 1

    # --- the daemon ----------------------------------------------------------------------

    def start(self, config: Path, fault: str | None) -> subprocess.Popen[bytes]:
        env = {**os.environ, "GUARDMAIL_FAULT_LOG": str(self.root / "reached.log")}
        env.pop("GUARDMAIL_FAULT", None)
        if fault is not None:
            env["GUARDMAIL_FAULT"] = fault
        log = (self.root / "daemon.log").open("ab")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "guardmail", "-c", str(config), "run"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
                cwd=REPO,
            )
        finally:
            log.close()

    def round(self, config: Path, number: int) -> None:
        fault = None
        if self.rng.random() < 0.7:
            fault = f"{self.rng.choice(self.points)}:{self.rng.randint(1, 3)}"
        log = self.root / "daemon.log"
        offset = log.stat().st_size if log.exists() else 0
        proc = self.start(config, fault)
        for _ in range(self.rng.randint(1, 4)):
            self.deliver()
        if self.rng.random() < 0.2:
            # Half the time once the daemon watches: a hot reload. Written at once, the daemon
            # (seconds to start) reads it at start, and no reload would ever be tested.
            if self.reload_rng.random() < 0.5:
                self.wait_watching(proc, log, offset)
            self.add_late_offender()
        if self.rng.random() < 0.3:
            self.rng.choice(self.channels).disturb()
        # A loaded machine takes seconds to start Python: a fault round's 3 s, and most other
        # rounds' time, run from when every channel watches, so that kills land in the daemon's
        # work, not in its imports (and a crash point can be reached at all).
        began = time.monotonic()
        if fault or self.rng.random() < 0.8:
            self.wait_watching(proc, log, offset)
        deadline = time.monotonic() + (3.0 if fault else self.rng.uniform(0.2, 2.0))
        if time.monotonic() - began > 20:
            self.log(f"round {number}: the daemon took {time.monotonic() - began:.0f} s to watch")
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            point = None
        else:
            point = fault.split(":")[0] if fault and proc.returncode == -signal.SIGKILL else None
            if proc.returncode != -signal.SIGKILL:
                self.violate(number, f"the daemon exited with {proc.returncode} by itself")
        proc.wait(timeout=10)
        self.result.kills += 1
        if point is not None:
            self.result.points[point] += 1
        self.result.rounds += 1

    def wait_watching(self, proc: subprocess.Popen[bytes], log: Path, offset: int) -> None:
        """Until this run's log past ``offset`` says every channel watches (at most 30 s; or
        the daemon died)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            text = log.read_bytes()[offset:]
            if all(c.watching(text) for c in self.channels):
                return
            time.sleep(0.02)

    def settle(self, config: Path) -> None:
        """A last run without faults, until every offender item has been acted on (seen from the
        servers and the journal); then a clean stop."""
        log = self.root / "daemon.log"
        offset = log.stat().st_size if log.exists() else 0
        proc = self.start(config, None)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                # Judge only once this run watches (and has scanned what is there at start).
                text = log.read_bytes()[offset:]
                if (
                    all(c.watching(text) for c in self.channels)
                    and not any(c.pending(self.action) for c in self.channels)
                    and self.actions_complete()
                ):
                    break
                time.sleep(0.1)
            time.sleep(0.5)  # a last rescan finds anything a move left behind
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=20)
        if code != 0:
            self.violate(-1, f"the final run ended with {code}")

    # --- what the vault says -------------------------------------------------------------

    def journal(self) -> dict[str, list[dict[str, object]]]:
        path = self.root / "var" / "guardmail.sqlite3"
        tenants = sorted({t for c in self.channels for t in c.tenants})
        if not path.exists():
            return {t: [] for t in tenants}
        storage = SQLiteStorage(path)
        try:
            with storage.transaction() as tx:
                return {t: [json.loads(r.body) for r in tx.journal_rows(t)] for t in tenants}
        finally:
            storage.close()

    def actions_complete(self) -> bool:
        for entries in self.journal().values():
            archived = {e["seq"] for e in entries if e.get("kind") == "archived"}
            acted = {e.get("archived_seq") for e in entries if e.get("kind") == "action"}
            if not archived <= acted:
                return False
        return True

    def violate(self, number: int, what: str) -> None:
        where = f"round {number}" if number >= 0 else "after the campaign"
        self.result.violations.append(f"{where} (seed {self.seed}): {what}")

    def check(self, sink: SmtpSink, config: Path) -> None:
        checks = Checks(
            self.journal(),
            self.root / "var" / "vault",
            self.action,
            lambda what: self.violate(-1, what),
        )
        for channel in self.channels:
            channel.check(checks)
            self.result.messages[channel.name] = len(channel.messages)
        self.result.limits += checks.limits
        to = Counter(r for received in sink.received for r in received.rcpt_tos)
        self.result.warnings = sum(to.values())
        for address, count in to.items():
            if count > 1:
                self.violate(-1, f"{count} warnings sent to {address}")
        verify = subprocess.run(
            [sys.executable, "-m", "guardmail", "-c", str(config), "evidence", "verify"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if verify.returncode != 0:
            self.violate(-1, f"evidence verify: {(verify.stdout + verify.stderr).strip()[-300:]}")
        reached = self.root / "reached.log"
        if reached.exists():
            self.result.reached.update(reached.read_text().split())

    def run(self, rounds: int) -> Result:
        with ExitStack() as stack:
            sink = stack.enter_context(SmtpSink(self.root / "smtp-ca.pem"))
            for channel in self.channels:
                channel.start(stack)
            config = self.write_config(sink)
            for _ in range(self.rng.randint(0, 3)):
                self.deliver()  # present before the first start: the start-up scan finds them
            for number in range(rounds):
                self.round(config, number)
            self.settle(config)
            self.check(sink, config)
        return self.result
