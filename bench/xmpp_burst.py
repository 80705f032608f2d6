"""A burst at a watched XMPP account (issue 23): N stanzas within about a second at the real
``guardmail run``, through a private Prosody on loopback; memory stays bounded, nothing is dropped.

Two senders (an offender, whose messages are quarantined, and a friend) write their share of N
chat messages, interleaved in slices spread over ``--seconds``, while the person's own client
(the resource ``phone``, priority 5) is online; the daemon (priority -1) gets the carbons. The run
ends once the phone has every message and the journal every offender message with its action.
Prints: how long the senders took, how long until all was archived, the daemon's RSS before the
burst and its peak (VmHWM), and the counts checked: every offender message archived exactly once
with one action, every clean one never archived, every message at the phone exactly once.
Exit 1 if a count is wrong. Asserts nothing about time. Needs Prosody and root (see bench/xmpp.py).

    python bench/xmpp_burst.py                 # 5,000 stanzas in ~1 s, a fifth from the offender
    python bench/xmpp_burst.py --stanzas 20000 --seconds 2
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guardmail.storage.sqlite import SQLiteStorage  # noqa: E402
from tests.servers.prosody import DOMAIN, Peer, start_prosody  # noqa: E402

VICTIM = f"victim@{DOMAIN}"
USERS = {"victim": "victim-pw", "stalker": "stalker-pw", "friend": "friend-pw"}
_ID = re.compile(rb"""\sid=['"]burst-(\d+)['"]""")
CONFIG = """\
state_dir: {tmp}/var
offenders:
  - name: Stalker
    jids: [stalker@{domain}]
    action: quarantine
sources:
  xmpp:
    - name: victim
      jid: {victim}
      host: 127.0.0.1
      port: {port}
      tls: none
      password_file: {tmp}/password
      mam_sync_seconds: 30
      timeout_seconds: 30
"""


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def journal(tmp: Path) -> tuple[Counter[str], int]:
    """Archived message ids (with counts) and the number of action entries."""
    storage = SQLiteStorage(tmp / "var" / "guardmail.sqlite3")
    try:
        with storage.transaction() as tx:
            rows = [json.loads(r.body) for r in tx.journal_rows("default")]
    finally:
        storage.close()
    archived = Counter(str(e.get("message_id")) for e in rows if e.get("kind") == "archived")
    return archived, sum(1 for e in rows if e.get("kind") == "action")


def archiving_seconds(log: Path) -> float:
    """From the daemon's first ``item.archived`` to its last (its own pace, not the polling);
    a group of several logs one ``items.archived`` at INFO, its items' at DEBUG."""
    stamps = re.findall(r"time=(\S+) level=\w+ event=items?\.archived", log.read_text())
    if len(stamps) < 2:
        return 0.0
    first, last = (datetime.fromisoformat(stamps[i]) for i in (0, -1))
    return (last - first).total_seconds()


def send_burst(peer: Peer, numbers: list[int], slices: int, seconds: float) -> None:
    """Write the messages in ``slices`` writes spread evenly over ``seconds``."""
    start = time.monotonic()
    size = max(1, -(-len(numbers) // slices))
    for i in range(0, len(numbers), size):
        chunk = "".join(
            f"<message to='{VICTIM}' type='chat' id='burst-{n}'><body>message {n}</body></message>"
            for n in numbers[i : i + size]
        )
        peer.send(chunk)
        delay = start + seconds * (i + size) / len(numbers) - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stanzas", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=1.0, help="spread the burst over this")
    parser.add_argument("--offender-share", type=float, default=0.2)
    args = parser.parse_args()
    server = start_prosody(USERS)
    tmp = Path(tempfile.mkdtemp(prefix="gm-burst-"))
    daemon: subprocess.Popen[bytes] | None = None
    peers: list[Peer] = []
    try:
        (tmp / "password").write_text(USERS["victim"] + "\n")
        config = tmp / "guardmail.yaml"
        config.write_text(CONFIG.format(tmp=tmp, domain=DOMAIN, victim=VICTIM, port=server.port))
        phone = server.peer("victim", resource="phone", priority=5)
        stalker, friend = (
            server.peer("stalker", priority=None),
            server.peer("friend", priority=None),
        )
        peers += [phone, stalker, friend]
        log = tmp / "daemon.log"
        with log.open("wb") as err:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "guardmail", "-c", str(config), "run"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 60
        while b"xmpp.caught_up" not in log.read_bytes():
            if time.monotonic() > deadline or daemon.poll() is not None:
                print(log.read_text(errors="replace")[-2000:])
                return 1
            time.sleep(0.05)
        time.sleep(0.5)
        rss_before = status_kb(daemon.pid, "VmRSS")
        every = max(1, round(1 / args.offender_share)) if args.offender_share > 0 else 0
        offender = [n for n in range(args.stanzas) if every and n % every == 0]
        clean = [n for n in range(args.stanzas) if not every or n % every]
        slices = max(1, int(args.seconds * 50))
        began = time.monotonic()
        writers = [
            threading.Thread(target=send_burst, args=(p, nums, slices, args.seconds))
            for p, nums in ((stalker, offender), (friend, clean))
        ]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        sent = time.monotonic() - began
        at_phone: Counter[int] = Counter()
        archived: Counter[str] = Counter()
        actions = 0
        phone_done: float | None = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            for raw in phone.drain(quiet=0.2):
                if raw.startswith(b"<message") and (m := _ID.search(raw[: raw.find(b">")])):
                    at_phone[int(m.group(1))] += 1
            if phone_done is None and len(at_phone) >= args.stanzas:
                phone_done = time.monotonic() - began
            archived, actions = journal(tmp)
            if phone_done is not None and actions >= len(offender):
                break
        done = time.monotonic() - began
        peak = status_kb(daemon.pid, "VmHWM")
        rss_after = status_kb(daemon.pid, "VmRSS")
        wrong_off = [n for n in offender if archived[f"burst-{n}"] != 1]
        wrong_clean = [n for n in clean if archived[f"burst-{n}"]]
        wrong_phone = [n for n in range(args.stanzas) if at_phone[n] != 1]
        print(
            f"burst of {args.stanzas} stanzas ({len(offender)} offender, {len(clean)} clean) "
            f"written in {sent:.2f} s; all at the phone after {phone_done or 0:.1f} s, all "
            f"archived and acted on after {done:.1f} s (an fsync'd item at a time; first to "
            f"last archived by the daemon: {archiving_seconds(log):.1f} s)"
        )
        print(
            f"daemon RSS: {rss_before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB "
            f"(VmHWM, whole run), {rss_after / 1024:.1f} MiB after"
        )
        print(
            f"offender archived exactly once: {len(offender) - len(wrong_off)}/{len(offender)}; "
            f"actions journaled: {actions}; clean archived: {len(wrong_clean)}; "
            f"at the phone exactly once: {args.stanzas - len(wrong_phone)}/{args.stanzas}"
        )
        return 1 if wrong_off or wrong_clean or wrong_phone or actions != len(offender) else 0
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
        for p in peers:
            p.close()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
