"""The crash campaign (issue 23): real traffic through a real ``guardmail run``, SIGKILLs at
random instants and at every crash point of ``guardmail.faults``, then the promises checked from
the outside: the Maildir, the vault, the SMTP sink that receives the warning.

Used by ``tests/integration/test_chaos.py`` (a short run) and ``bench/chaos.py`` (a long one).

Each round starts the daemon, delivers a few messages (offenders' and clean, into ``new/`` and
``cur/``, some renamed by "the person's mail client" from ``new/`` to ``cur/`` meanwhile), now and
then adds an offender to ``offenders.d/late.yaml`` (a hot reload; mail from that sender may already
be in the inbox, judged clean until then), and kills it: either at a crash point
(``GUARDMAIL_FAULT=POINT:COUNT``) or at a random instant. A final run without faults lets it
finish. Then, for every message delivered:
- an offender's message is archived exactly once, byte-exact, is no longer in the inbox (in
  ``.Quarantine`` once for ``quarantine``, gone for ``block``), and its action is journaled once;
- a clean message is in the inbox exactly once, untouched, and never archived;
- no offender received more than one warning;
- ``guardmail evidence verify`` passes.
A violation names the round and the seed that replays the campaign.
"""

from __future__ import annotations

import hashlib
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
from dataclasses import dataclass, field
from pathlib import Path

from guardmail.faults import POINTS
from guardmail.storage.sqlite import SQLiteStorage
from tests.servers.smtp_sink import SmtpSink

REPO = Path(__file__).resolve().parents[1]
OFFENDERS = {"stalker@example.net": "quarantine", "worse@example.org": "block"}
CLEAN = ("friend@innocent.example", "mum@family.example")

CONFIG = """\
state_dir: {root}/var
offenders:
  - name: Stalker
    addresses: [stalker@example.net]
    action: quarantine
  - name: Worse
    addresses: [worse@example.org]
    action: block
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
sources:
  maildir:
    - path: {root}/Maildir
      rescan_seconds: 0.2
"""


@dataclass
class Message:
    number: int
    sender: str
    raw: bytes
    name: str  # the Maildir unique name

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


@dataclass
class Result:
    seed: int
    rounds: int = 0
    kills: int = 0
    points: Counter[str] = field(default_factory=Counter)  # crash points that killed
    reached: Counter[str] = field(default_factory=Counter)  # crash points passed, all rounds
    messages: int = 0
    warnings: int = 0
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        points = ", ".join(f"{p} {n}" for p, n in sorted(self.points.items())) or "none"
        return (
            f"seed {self.seed}: {self.rounds} rounds, {self.kills} kills "
            f"(at crash points: {points}), {self.messages} messages, "
            f"{self.warnings} warnings sent, {len(self.violations)} violations"
        )


class Campaign:
    def __init__(self, root: Path, *, seed: int, log: Callable[[str], None] = print) -> None:
        self.root = root
        self.seed = seed
        self.rng = random.Random(seed)
        self.log = log
        self.maildir = root / "Maildir"
        self.messages: list[Message] = []
        self.late: list[str] = []  # offenders added during the campaign (quarantine)
        self.result = Result(seed=seed)

    def action(self, sender: str) -> str | None:
        """What the final configuration does to ``sender``'s mail (None: clean)."""
        return OFFENDERS.get(sender) or ("quarantine" if sender in self.late else None)

    def add_late_offender(self) -> None:
        """One more offender in offenders.d/late.yaml, written atomically: a hot reload."""
        self.late.append(f"late{len(self.late)}@late.example")
        lines = ["offenders:"]
        for n, address in enumerate(self.late):
            lines += [
                f"  - name: Late {n}",
                f"    addresses: [{address}]",
                "    action: quarantine",
            ]
        folder = self.root / "offenders.d"
        folder.mkdir(exist_ok=True)
        tmp = folder / ".late.yaml.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        os.rename(tmp, folder / "late.yaml")

    # --- setup and traffic ---------------------------------------------------------------

    def write_config(self, sink: SmtpSink) -> Path:
        for sub in ("tmp", "new", "cur"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "config" / "warning.txt.j2", self.root / "warning.txt.j2")
        (self.root / "smtp-password").write_text("secret\n")
        config = self.root / "guardmail.yaml"
        config.write_text(CONFIG.format(root=self.root, port=sink.port, ca=sink.ca_file))
        return config

    def deliver(self) -> None:
        n = len(self.messages)
        upcoming = f"late{len(self.late)}@late.example"  # an offender only from a later round
        sender = self.rng.choice([*OFFENDERS, *CLEAN, *self.late[-2:], upcoming])
        raw = (
            f"From: <{sender}>\r\nTo: jane@example.org\r\nSubject: message {n}\r\n"
            f"Message-ID: <chaos-{self.seed}-{n}@test>\r\nX-Chaos: {n}\r\n\r\nbody {n} "
            f"{self.rng.getrandbits(64):x}\r\n"
        ).encode()
        name = f"{1_700_000_000 + n}.chaos{n}.host"
        sub = "new" if self.rng.random() < 0.8 else "cur"
        final = name if sub == "new" else f"{name}:2,S"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(raw)
        os.rename(tmp, self.maildir / sub / final)
        self.messages.append(Message(number=n, sender=sender, raw=raw, name=name))

    def client_reads(self) -> None:
        """The person's mail client moves a message it saw from new/ to cur/ with a flag."""
        try:
            names = os.listdir(self.maildir / "new")
        except FileNotFoundError:
            return
        if names:
            name = self.rng.choice(sorted(names))
            try:
                os.rename(self.maildir / "new" / name, self.maildir / "cur" / f"{name}:2,S")
            except FileNotFoundError:
                pass  # guardmail moved it first

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
            fault = f"{self.rng.choice(sorted(POINTS))}:{self.rng.randint(1, 3)}"
        proc = self.start(config, fault)
        for _ in range(self.rng.randint(1, 4)):
            self.deliver()
        if self.rng.random() < 0.2:
            self.add_late_offender()
        if self.rng.random() < 0.3:
            self.client_reads()
        deadline = time.monotonic() + (3.0 if fault else self.rng.uniform(0.2, 2.0))
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

    def settle(self, config: Path) -> None:
        """A last run without faults, until every offender message has left the inbox and
        every archived item has its action; then a clean stop."""
        log = self.root / "daemon.log"
        offset = log.stat().st_size if log.exists() else 0
        proc = self.start(config, None)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                # Judge only once this run watches (and has scanned what is there at start).
                started = b"maildir.watching" in log.read_bytes()[offset:]
                if started and not self.inbox_offenders() and self.actions_complete():
                    break
                time.sleep(0.1)
            time.sleep(0.5)  # a last rescan finds anything a move left behind
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=20)
        if code != 0:
            self.violate(-1, f"the final run ended with {code}")

    # --- what the servers and the vault say ----------------------------------------------

    def inbox(self) -> Counter[str]:
        """Unique names in new/ and cur/ (flags stripped), with their counts."""
        found: Counter[str] = Counter()
        for sub in ("new", "cur"):
            for name in os.listdir(self.maildir / sub):
                found[name.split(":", 1)[0]] += 1
        return found

    def inbox_offenders(self) -> list[str]:
        names = self.inbox()
        return [m.name for m in self.messages if self.action(m.sender) and names[m.name]]

    def journal(self) -> list[dict[str, object]]:
        path = self.root / "var" / "guardmail.sqlite3"
        if not path.exists():
            return []
        storage = SQLiteStorage(path)
        try:
            with storage.transaction() as tx:
                return [json.loads(r.body) for r in tx.journal_rows("default")]
        finally:
            storage.close()

    def actions_complete(self) -> bool:
        entries = self.journal()
        archived = {e["seq"] for e in entries if e.get("kind") == "archived"}
        acted = {e.get("archived_seq") for e in entries if e.get("kind") == "action"}
        return archived <= acted

    def violate(self, number: int, what: str) -> None:
        where = f"round {number}" if number >= 0 else "after the campaign"
        self.result.violations.append(f"{where} (seed {self.seed}): {what}")

    def check(self, sink: SmtpSink, config: Path) -> None:
        entries = self.journal()
        archived = [e for e in entries if e.get("kind") == "archived"]
        actions = Counter(e.get("archived_seq") for e in entries if e.get("kind") == "action")
        by_sha: dict[str, list[dict[str, object]]] = {}
        for entry in archived:
            by_sha.setdefault(str(entry.get("sha256")), []).append(entry)
        inbox = self.inbox()
        quarantine = Counter(
            name.split(":", 1)[0]
            for sub in ("new", "cur")
            for name in _listdir(self.maildir / ".Quarantine" / sub)
        )
        blobs = self.root / "var" / "vault" / "default" / "blobs"
        for m in self.messages:
            mine = by_sha.get(m.sha256, [])
            action = self.action(m.sender)
            if action is None:
                if mine:
                    self.violate(-1, f"clean message {m.number} was archived")
                if inbox[m.name] != 1 or quarantine[m.name]:
                    self.violate(-1, f"clean message {m.number} is in the inbox {inbox[m.name]}x")
                elif _read(self.maildir, m.name) != m.raw:
                    self.violate(-1, f"clean message {m.number} was changed")
                continue
            if len(mine) != 1:
                self.violate(-1, f"offender message {m.number} archived {len(mine)}x")
                continue
            blob = blobs / m.sha256[:2] / m.sha256
            if not blob.exists() or hashlib.sha256(blob.read_bytes()).hexdigest() != m.sha256:
                self.violate(-1, f"offender message {m.number}: blob missing or altered")
            if actions[mine[0]["seq"]] != 1:
                self.violate(
                    -1, f"offender message {m.number}: {actions[mine[0]['seq']]} actions journaled"
                )
            if inbox[m.name]:
                self.violate(-1, f"offender message {m.number} still in the inbox")
            wanted = 1 if action == "quarantine" else 0
            if quarantine[m.name] != wanted:
                self.violate(-1, f"offender message {m.number} in quarantine {quarantine[m.name]}x")
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
        self.result.messages = len(self.messages)

    def run(self, rounds: int) -> Result:
        with SmtpSink(self.root / "smtp-ca.pem") as sink:
            config = self.write_config(sink)
            for _ in range(self.rng.randint(0, 3)):
                self.deliver()  # present before the first start: the start-up scan finds them
            for number in range(rounds):
                self.round(config, number)
            self.settle(config)
            self.check(sink, config)
        return self.result


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _read(maildir: Path, name: str) -> bytes | None:
    for sub in ("new", "cur"):
        for entry in _listdir(maildir / sub):
            if entry.split(":", 1)[0] == name:
                return (maildir / sub / entry).read_bytes()
    return None
