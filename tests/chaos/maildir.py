"""The crash campaign's Maildir channel: files delivered into ``new/`` and ``cur/`` as an MDA
would, some renamed from ``new/`` to ``cur/`` by "the person's mail client" meanwhile.

After the campaign: an offender's message is no longer in the inbox (in ``.Quarantine`` once for
``quarantine``, gone for ``block``); a clean one is in the inbox exactly once, byte-identical, and
nowhere else."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from tests.chaos.campaign import Checks, Message, email_address


class MaildirChannel:
    name = "maildir"
    points = frozenset({"maildir.moved"})
    tenants = ("default",)

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.rng = rng
        self.maildir = root / "Maildir"
        self.messages: list[Message] = []

    def start(self, stack: ExitStack) -> None:
        for sub in ("tmp", "new", "cur"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)

    def sources(self) -> str:
        return f"  maildir:\n    - path: {self.maildir}\n      rescan_seconds: 0.2\n"

    def identities(self, person: str) -> dict[str, list[str]]:
        return {"addresses": [email_address(person)]}

    def deliver(self, person: str, number: int) -> None:
        raw = (
            f"From: <{email_address(person)}>\r\nTo: jane@example.org\r\n"
            f"Subject: message {number}\r\nMessage-ID: <chaos-{number}@maildir.test>\r\n"
            f"X-Chaos: {number}\r\n\r\nbody {number} {self.rng.getrandbits(64):x}\r\n"
        ).encode()
        name = f"{1_700_000_000 + number}.chaos{number}.host"
        sub = "new" if self.rng.random() < 0.8 else "cur"
        final = name if sub == "new" else f"{name}:2,S"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(raw)
        os.rename(tmp, self.maildir / sub / final)
        self.messages.append(Message(number=number, person=person, raw=raw, key=name))

    def disturb(self) -> None:
        """The person's mail client moves a message it saw from new/ to cur/ with a flag."""
        names = _listdir(self.maildir / "new")
        if names:
            name = self.rng.choice(sorted(names))
            try:
                os.rename(self.maildir / "new" / name, self.maildir / "cur" / f"{name}:2,S")
            except FileNotFoundError:
                pass  # guardmail moved it first

    def watching(self, log: bytes) -> bool:
        return b"maildir.watching" in log

    def inbox(self) -> Counter[str]:
        """Unique names in new/ and cur/ (flags stripped), with their counts."""
        return _names(self.maildir)

    def pending(self, action: Callable[[str], str | None]) -> bool:
        names = self.inbox()
        return any(action(m.person) and names[m.key] for m in self.messages)

    def check(self, checks: Checks) -> None:
        inbox = self.inbox()
        quarantine = _names(self.maildir / ".Quarantine")
        for m in self.messages:
            action = checks.action(m.person)
            if action is None:
                checks.clean(self.name, m)
                if inbox[m.key] != 1 or quarantine[m.key]:
                    checks.violate(
                        f"maildir: clean item {m.number} is in the inbox {inbox[m.key]}x"
                    )
                elif _read(self.maildir, m.key) != m.raw:
                    checks.violate(f"maildir: clean item {m.number} was changed")
                continue
            if not checks.offender(self.name, m):
                continue
            if inbox[m.key]:
                checks.violate(f"maildir: offender item {m.number} still in the inbox")
            wanted = 1 if action == "quarantine" else 0
            if quarantine[m.key] != wanted:
                checks.violate(
                    f"maildir: offender item {m.number} in quarantine {quarantine[m.key]}x"
                )


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _names(maildir: Path) -> Counter[str]:
    return Counter(
        name.split(":", 1)[0] for sub in ("new", "cur") for name in _listdir(maildir / sub)
    )


def _read(maildir: Path, name: str) -> bytes | None:
    for sub in ("new", "cur"):
        for entry in _listdir(maildir / sub):
            if entry.split(":", 1)[0] == name:
                return (maildir / sub / entry).read_bytes()
    return None
