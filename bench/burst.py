"""Bursts: N messages arriving at once in one Maildir, a tenth of them from an offender.

    python bench/burst.py [--messages 10000]

Starts a real ``guardmail run``, drops the burst into ``new/`` (as an MDA would: tmp/ then
rename), and reports the time until every offender message is quarantined, the daemon's peak
resident memory (VmHWM) and its resident memory at the end, and checks that nothing was
dropped: every offender message archived once and quarantined, every clean one untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = """\
state_dir: {root}/var
offenders:
  - name: Stalker
    addresses: [stalker@example.net]
sources:
  maildir:
    - path: {root}/Maildir
      create: true
"""


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="guardmail-burst-") as tmp:
        root = Path(tmp)
        (root / "guardmail.yaml").write_text(CONFIG.format(root=root))
        maildir = root / "Maildir"
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True)
        log = (root / "daemon.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "guardmail", "-c", str(root / "guardmail.yaml"), "run"],
            stdout=subprocess.DEVNULL, stderr=log, cwd=REPO,
        )  # fmt: skip
        try:
            while b"maildir.watching" not in (root / "daemon.log").read_bytes():
                time.sleep(0.05)
            idle = memory_kib(proc.pid, "VmRSS")
            offenders = []
            started = time.monotonic()
            for n in range(args.messages):
                sender = "stalker@example.net" if n % 10 == 0 else f"friend{n}@example.org"
                raw = f"From: {sender}\r\nSubject: {n}\r\n\r\nbody {n}\r\n".encode()
                name = f"{n}.burst.host"
                (maildir / "tmp" / name).write_bytes(raw)
                os.rename(maildir / "tmp" / name, maildir / "new" / name)
                if n % 10 == 0:
                    offenders.append(name)
            quarantine = maildir / ".Quarantine" / "new"
            while not quarantine.is_dir() or len(os.listdir(quarantine)) < len(offenders):
                if proc.poll() is not None:
                    print("the daemon died", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            seconds = time.monotonic() - started
            peak, now = memory_kib(proc.pid, "VmHWM"), memory_kib(proc.pid, "VmRSS")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            log.close()
        db = sqlite3.connect(root / "var" / "guardmail.sqlite3")
        archived = [
            json.loads(body)["source_ref"]
            for (body,) in db.execute("SELECT body FROM journal WHERE kind = 'archived'")
        ]
        db.close()
        clean_left = len(os.listdir(maildir / "new")) + len(os.listdir(maildir / "cur"))
        ok = len(archived) == len(set(archived)) == len(offenders) and clean_left == (
            args.messages - len(offenders)
        )
        print(
            f"{args.messages} messages ({len(offenders)} from the offender) at once: all offender "
            f"mail quarantined in {seconds:.1f} s; daemon memory idle {idle / 1024:.0f} MiB, peak "
            f"{peak / 1024:.0f} MiB, after {now / 1024:.0f} MiB; archived {len(archived)}, clean "
            f"left in place {clean_left}: {'ok' if ok else 'MISMATCH'}"
        )
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
