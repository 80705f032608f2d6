"""The XMPP watcher against a private Prosody on loopback: throughput, latency, many accounts.

1. Throughput (backlog drained): the watcher's socket is paused while a sender writes N chat
   messages to the watched account (the person's own client, online at priority 5, receives
   them; the watcher gets the carbons); once the person's client has them all, reading resumes
   and the clock runs until the last one is handled. (a) a bare slixmpp client that only counts
   the messages (the floor), (b) the watcher judging clean messages, (c) the watcher archiving
   offender messages (an fsync'd blob and journal entry each).
2. Latency: offender messages paced at a steady rate, from the sender's write to "archived and
   acted on"; beside it, the same for the bare client's receipt of clean messages.
3. Many accounts in one process, each process fresh: VmRSS before and after N accounts are
   connected (and, for the watcher, caught up with the archive), and the time to connect them
   all; (a) bare slixmpp clients sharing one TLS context, with slixmpp's own SCRAM, (b) watchers
   (hashlib PBKDF2). STARTTLS, SCRAM-SHA-1 with Prosody's default 10,000 iterations.

Prints figures; asserts nothing about time. Needs Prosody (scripts/system-packages.sh) and root
(the private Prosody runs as root in a temporary directory, removed at the end).

    python bench/xmpp.py            # 20,000 / 5,000 messages, 2,000 paced at 200/s, 500 accounts
    python bench/xmpp.py --quick    # 2,000 / 500 messages, 200 paced at 100/s, 50 accounts
    python bench/xmpp.py --part 1 --offender 5000 --paced 2000 --rate 1000   # issue 28

``--base TREE`` runs part 1 (only) in fresh processes, alternately with the guardmail of another
checkout (e.g. ``git archive main | tar -x -C /tmp/base``) and with this one, ``--pairs`` times
(base first in odd pairs, this tree first in even ones; a base run's children too: its
directory and ``PYTHONPATH``), each beside the load (``/proc/loadavg``) at its start and end,
then prints one table of every run: a change measured against its baseline in one command.
Where a tree's vault has a blob writer with figures (``guardmail.vault.blobwriter.TIMES``), the
blob phase of its offender runs is printed split into its steps: the committer's wait for the
child and the child's own parts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# ``--tree DIR``: import guardmail (and the test servers) from that checkout (``--base``'s runs).
_TREE = sys.argv[sys.argv.index("--tree") + 1] if "--tree" in sys.argv[:-1] else None
sys.path.insert(0, _TREE or str(Path(__file__).resolve().parent.parent))

from slixmpp import ClientXMPP  # noqa: E402
from slixmpp.util.sasl.mechanisms import SCRAM  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

from guardmail import logs  # noqa: E402
from guardmail.channels.xmpp.client import shared_context, slixmpp_hi  # noqa: E402
from guardmail.channels.xmpp.session import teardown  # noqa: E402
from guardmail.channels.xmpp.watch import XmppSource  # noqa: E402
from guardmail.config.xmpp_source import XmppSourceConfig  # noqa: E402
from guardmail.core.item import Channel, Identity, Item  # noqa: E402
from guardmail.core.rules import Action, OffenderRule, RuleSet  # noqa: E402
from guardmail.pipeline import Actor, BatchActor, Pipeline  # noqa: E402
from guardmail.pipeline_batch import Outcome  # noqa: E402
from guardmail.storage.sqlite import SQLiteStorage  # noqa: E402
from guardmail.vault.store import Vault  # noqa: E402
from tests.servers.prosody import DOMAIN, Peer, Prosody, start_prosody  # noqa: E402

MESSAGE = (
    "<message to='{victim}@{domain}' type='chat' id='{tag}-{n}'><body>message {n}</body></message>"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    clean: int
    offender: int
    paced: int
    rate: float
    accounts: int


FULL = Sizes(clean=20_000, offender=2_000, paced=1_000, rate=40.0, accounts=500)
QUICK = Sizes(clean=2_000, offender=300, paced=200, rate=40.0, accounts=50)
USERS = {"stalker": "stalker-pw", "friend": "friend-pw"}
VICTIM_PW = "victim-pw"  # each measurement watches its own account (an empty archive)


# --- the sender: another process, so that the measured one does only the watching -----------


def sender_main(
    port: int, victim: str, user: str, count: int, rate: float, tag: str, conn: Connection
) -> None:
    """Log in ``user`` and the person's own client; on "go", send; report times and delivery."""
    phone = Peer.login(port, victim, VICTIM_PW, resource="phone", priority=5)
    sender = Peer.login(port, user, USERS[user], resource="bench", priority=0)
    delivered = threading.Event()

    marker = f"id='{tag}-".encode()

    def read_phone() -> None:
        # The person's client must keep reading, or the server would hold everything back.
        seen, tail = 0, b""
        phone.sock.settimeout(None)
        while seen < count:
            data = phone.sock.recv(1 << 20)
            if not data:
                return
            window = tail + data  # a marker split between two reads is counted once
            seen += window.count(marker)
            tail = window[-(len(marker) - 1) :]
        delivered.set()

    threading.Thread(target=read_phone, daemon=True).start()
    conn.send("ready")
    assert conn.recv() == "go"
    sent: list[float] = []
    if rate <= 0:
        batch = 200
        for start in range(0, count, batch):
            data = "".join(
                MESSAGE.format(victim=victim, domain=DOMAIN, tag=tag, n=n)
                for n in range(start, min(start + batch, count))
            )
            sender.send(data.encode())
        sent.append(time.monotonic())
    else:
        t0 = time.monotonic()
        for n in range(count):
            wait = t0 + n / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sent.append(time.monotonic())
            sender.send(MESSAGE.format(victim=victim, domain=DOMAIN, tag=tag, n=n).encode())
    delivered.wait(timeout=600)
    conn.send((sent, time.monotonic()))
    conn.recv()  # "bye"
    sender.close()
    phone.close()


class Sender:
    def __init__(
        self, server: Prosody, victim: str, user: str, count: int, rate: float, tag: str
    ) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=sender_main,
            args=(server.port, victim, user, count, rate, tag, child),
            daemon=True,
        )
        self.proc.start()
        assert self.conn.recv() == "ready"

    def go(self) -> None:
        self.conn.send("go")

    async def result(self) -> tuple[list[float], float]:
        sent, delivered = await asyncio.to_thread(self.conn.recv)
        return sent, delivered

    def close(self) -> None:
        self.conn.send("bye")
        self.proc.join(timeout=15)
        if self.proc.is_alive():
            self.proc.kill()


# --- the measured side -------------------------------------------------------------------------


class Clock:
    """Completion times per message id (those starting with ``tag``), and waiting for a count."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.done: dict[str, float] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def mark(self, ident: str) -> None:
        if not ident.startswith(self.tag):
            return
        self.done.setdefault(ident, time.monotonic())
        for n, fut in self._waiters:
            if len(self.done) >= n and not fut.done():
                fut.set_result(None)

    async def wait(self, n: int, seconds: float = 600) -> None:
        if len(self.done) >= n:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        await asyncio.wait_for(fut, seconds)


class TimedPipeline(Pipeline):
    clock_: Clock

    async def process(self, item: Item, actor: Actor) -> Outcome:
        outcome = await super().process(item, actor)
        self.clock_.mark(item.summary.message_id)
        return outcome

    def submit(self, item: Item, actor: Actor) -> Awaitable[Outcome]:
        # The watcher queues each stanza for the vault's group commit and awaits it later.
        waiter = super().submit(item, actor)

        async def marked() -> Outcome:
            outcome = await waiter
            self.clock_.mark(item.summary.message_id)
            return outcome

        return marked()

    def submit_many(self, items: Sequence[Item], actor: BatchActor) -> Awaitable[list[Outcome]]:
        # The watcher hands every stanza that has arrived to the vault in one request.
        waiter = super().submit_many(items, actor)

        async def marked() -> list[Outcome]:
            outcomes = await waiter
            for item in items:
                self.clock_.mark(item.summary.message_id)
            return outcomes

        return marked()


class Watcher:
    """The XMPP source as the daemon runs it, with its own tenant state in a temporary dir."""

    def __init__(self, server: Prosody, tmp: Path, clock: Clock, victim: str) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "pw").write_text(VICTIM_PW + "\n")
        self.storage = SQLiteStorage(tmp / "guardmail.sqlite3")
        vault = Vault(tmp / "vault", self.storage, "default")
        rules = RuleSet(
            [OffenderRule(name="Stalker", jids=(f"stalker@{DOMAIN}",), action=Action.QUARANTINE)]
        )
        pipeline = TimedPipeline(vault=vault, rules=rules)
        pipeline.clock_ = clock
        cfg = XmppSourceConfig(
            name=victim,
            jid=f"{victim}@{DOMAIN}",
            host="127.0.0.1",
            port=server.port,
            ca_file=server.ca_file,
            password_file=tmp / "pw",
            mam_sync_seconds=3600,
        )
        self.source = XmppSource(cfg=cfg, tenant="default", pipeline=pipeline, storage=self.storage)

    def transport(self) -> Any:
        client = self.source._client
        return client.transport if client is not None else None


class BareClient(ClientXMPP):
    """slixmpp as shipped, counting every message stanza (the floor)."""

    def __init__(self, clock: Clock, ca: Path, victim: str) -> None:
        super().__init__(f"{victim}@{DOMAIN}/bare", VICTIM_PW, ssl_context=shared_context(ca))
        self.register_plugin("xep_0280")
        self.register_handler(Callback("count", MatchXPath("{jabber:client}message"), self._count))
        self.add_event_handler("session_start", self._start)
        self.clock = clock
        self.started = asyncio.Event()

    def _count(self, msg: Any) -> None:
        inner = msg.xml.find(".//{jabber:client}message")
        ident = (inner if inner is not None else msg.xml).get("id", "")
        self.clock.mark(ident)

    async def _start(self, _: Any) -> None:
        await self.plugin["xep_0280"].enable()
        self.send_presence(ppriority=-1)
        self.started.set()


async def until(predicate: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("bench: condition not reached")
        await asyncio.sleep(0.02)


class Measured:
    """The measured side of one run: the bare client or the watcher, on its own account."""

    def __init__(self, server: Prosody, tmp: Path, kind: str, victim: str, tag: str) -> None:
        self.server, self.tmp, self.kind, self.victim = server, tmp, kind, victim
        self.clock = Clock(tag)
        self.bare: BareClient | None = None
        self.watcher: Watcher | None = None
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Measured:
        if self.kind == "bare":
            self.bare = BareClient(self.clock, self.server.ca_file, self.victim)
            self.bare.connect("127.0.0.1", self.server.port)
            await asyncio.wait_for(self.bare.started.wait(), 30)
        else:
            watcher = self.watcher = Watcher(self.server, self.tmp, self.clock, self.victim)
            self.task = asyncio.create_task(watcher.source.run())
            await until(
                lambda: watcher.transport() is not None and watcher.source._roster_ready.is_set()
            )
            await asyncio.sleep(0.5)  # carbons enabled, (empty) archive read
        return self

    def transport(self) -> Any:
        if self.bare is not None:
            return self.bare.transport
        assert self.watcher is not None
        return self.watcher.transport()

    async def __aexit__(self, *_: object) -> None:
        if self.bare is not None:
            teardown(self.bare)
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.watcher is not None:
            self.watcher.storage.close()


async def backlog(server: Prosody, tmp: Path, kind: str, count: int, victim: str) -> float:
    """Messages per second handled from a backlog of ``count`` (kind: bare, clean, offender)."""
    tag = f"backlog{kind}"
    async with Measured(server, tmp, kind, victim, tag) as measured:
        user = "stalker" if kind == "offender" else "friend"
        sender = Sender(server, victim, user, count, 0, tag)
        transport = measured.transport()
        transport.pause_reading()
        sender.go()
        await sender.result()  # the person's own client has them all: the backlog is complete
        began = time.monotonic()
        transport.resume_reading()
        await measured.clock.wait(count)
        sender.close()
        return count / (max(measured.clock.done.values()) - began)


async def paced(
    server: Prosody, tmp: Path, kind: str, count: int, rate: float, victim: str
) -> list[float]:
    """Milliseconds from the sender's write to handled, per message."""
    tag = f"paced{kind}"
    async with Measured(server, tmp, kind, victim, tag) as measured:
        user = "stalker" if kind == "offender" else "friend"
        sender = Sender(server, victim, user, count, rate, tag)
        sender.go()
        sent, _ = await sender.result()
        await measured.clock.wait(count)
        sender.close()
        done = measured.clock.done
        return [(done[f"{tag}-{n}"] - sent[n]) * 1000 for n in range(count)]


# --- many accounts: a fresh process each --------------------------------------------------------


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def many_child(kind: str, n: int, port: int, ca: Path, tmp: Path) -> dict[str, float]:
    """Connect ``n`` accounts (user0...) in this process; memory and time to connect."""
    before = rss_kb()
    began = time.monotonic()
    tasks: list[asyncio.Task[None]] = []
    clients: list[ClientXMPP] = []
    started: set[int] = set()
    counter = _CaughtUp()
    if kind == "bare":
        SCRAM.Hi = slixmpp_hi  # type: ignore[method-assign]  # slixmpp's login as shipped
        for i in range(n):
            c = ClientXMPP(f"user{i}@{DOMAIN}/bare", "pw", ssl_context=shared_context(ca))

            def on_start(_: Any, i: int = i, c: ClientXMPP = c) -> None:
                c.send_presence(ppriority=-1)
                started.add(i)

            c.add_event_handler("session_start", on_start)
            c.connect("127.0.0.1", port)
            clients.append(c)
        ready: Callable[[], int] = lambda: len(started)  # noqa: E731
    else:
        log = logging.getLogger("guardmail")
        for handler in log.handlers:
            handler.setLevel(logging.WARNING)  # printed: warnings; counted: every event
        log.setLevel(logging.INFO)
        log.addHandler(counter)
        storage = SQLiteStorage(tmp / "guardmail.sqlite3")
        vault = Vault(tmp / "vault", storage, "default")
        pipeline = Pipeline(vault=vault, rules=RuleSet([]))
        (tmp / "pw").write_text("pw\n")
        for i in range(n):
            cfg = XmppSourceConfig(
                name=f"user{i}",
                jid=f"user{i}@{DOMAIN}",
                host="127.0.0.1",
                port=port,
                ca_file=ca,
                password_file=tmp / "pw",
            )
            source = XmppSource(cfg=cfg, tenant="default", pipeline=pipeline, storage=storage)
            tasks.append(asyncio.create_task(source.run()))
        ready = lambda: len(counter.accounts)  # noqa: E731
    await until(lambda: ready() >= n, seconds=600)
    connected = time.monotonic() - began
    await asyncio.sleep(2)
    after = rss_kb()
    for t in tasks:
        t.cancel()
    for c in clients:
        c.abort()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"connect_s": connected, "before_kb": before, "after_kb": after}


class _CaughtUp(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.accounts: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "xmpp.caught_up":
            self.accounts.add(getattr(record, "gm_fields", {}).get("account", ""))


def many(server: Prosody, kind: str, n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--many-child",
                kind,
                str(n),
                str(server.port),
                str(server.ca_file),
                tmp,
            ],
            capture_output=True,
            timeout=900,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"many-accounts child failed: {done.stderr.decode()[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return result


# --- the run ---------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _alone(tmp: Path) -> tuple[SQLiteStorage, Pipeline]:
    tmp.mkdir(parents=True)
    storage = SQLiteStorage(tmp / "guardmail.sqlite3")
    vault = Vault(tmp / "vault", storage, "default")
    rules = RuleSet([OffenderRule(name="S", jids=(f"stalker@{DOMAIN}",))])
    return storage, Pipeline(vault=vault, rules=rules)


async def vault_alone(tmp: Path, count: int) -> tuple[float, list[float]]:
    """The pipeline archiving synthetic offender items, no XMPP: rate, and ms per item."""
    storage, pipeline = _alone(tmp)

    class Nothing:
        async def act(self, item: Item, verdict: Any) -> str:
            return "nothing"

    each: list[float] = []
    began = time.monotonic()
    for n in range(count):
        raw = MESSAGE.format(victim="v", domain=DOMAIN, tag="alone", n=n).encode()
        item = Item(
            raw=raw,
            channel=Channel.XMPP,
            tenant="default",
            account="alone",
            source_ref=f"xmpp:alone:{n}",
            received_at=datetime.now(UTC),
            identities=(Identity(source="jid", address=f"stalker@{DOMAIN}/x"),),
            dedupe_scope="xmpp:alone",
        )
        t = time.monotonic()
        await pipeline.process(item, Nothing())
        each.append((time.monotonic() - t) * 1000)
    rate = count / (time.monotonic() - began)
    storage.close()
    return rate, each


def _line(label: str, ms: list[float]) -> str:
    return (
        f"   {label:<32} p50 {statistics.median(ms):7.2f}  p99 {pct(ms, 99):7.2f}"
        f"  max {max(ms):7.2f}"
    )


def writer_times() -> dict[str, float]:
    """The blob writers' figures so far (``blobwriter.TIMES``); empty in a tree without them."""
    from guardmail.vault import blobwriter

    times = getattr(blobwriter, "TIMES", None)
    if times is None:
        return {}
    with blobwriter.TIMES_LOCK:
        return dict(times)


def split(label: str, before: dict[str, float], seconds: float) -> dict[str, float]:
    """Print the blob phase of the run since ``before``, per second of the run; return it."""
    now = writer_times()
    got = {k: v - before.get(k, 0.0) for k, v in now.items()}
    if not got.get("groups"):
        return got
    groups, blobs = got.pop("groups"), got.pop("child.blobs", 0.0)
    parts = ", ".join(f"{k} {v / seconds * 1000:.0f}" for k, v in sorted(got.items()))
    print(
        f"   blob phase, {label}: {groups:.0f} groups of {blobs / groups:.0f} new blobs; "
        f"ms per second of run: {parts}"
    )
    return {**got, "groups": groups, "blobs": blobs, "seconds": seconds}


async def throughput_and_latency(server: Prosody, sizes: Sizes) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("1. throughput, backlog drained (messages per second, one process)")
        bare = await backlog(server, root / "a", "bare", sizes.clean, "v1")
        clean = await backlog(server, root / "b", "clean", sizes.clean, "v2")
        skip = (float("nan"), [float("nan")])
        alone_before, _ = await vault_alone(root / "d1", sizes.offender) if ALONE else skip
        times = writer_times()
        offender = await backlog(server, root / "c", "offender", sizes.offender, "v3")
        full = split("backlog", times, sizes.offender / offender)
        alone_after, _ = await vault_alone(root / "d2", sizes.offender) if ALONE else skip
        n, m = f"({sizes.clean:,} messages)", f"({sizes.offender:,} messages)"
        print(f"   bare slixmpp, counting          {bare:>9,.0f} /s   {n}")
        print(f"   guardmail, judged (clean)       {clean:>9,.0f} /s   {n}")
        print(f"   guardmail, archived (offender)  {offender:>9,.0f} /s   {m}")
        print(
            f"   the vault alone, archiving      {alone_before:>9,.0f} /s   {m} before, "
            f"{alone_after:,.0f} /s after (one item at a time: blob, directory, two commits)"
        )
        print(
            f"2. latency, sender's write to handled, {sizes.paced:,} messages "
            f"at {sizes.rate:g}/s (ms)"
        )
        bare_ms = await paced(server, root / "pbare", "bare", sizes.paced, sizes.rate, "v4")
        print(_line("bare slixmpp, received", bare_ms))
        times = writer_times()
        ms = await paced(server, root / "poff", "offender", sizes.paced, sizes.rate, "v5")
        print(_line("guardmail, archived and acted on", ms))
        at_rate = split(f"paced at {sizes.rate:g}/s", times, sizes.paced / sizes.rate)
        _, each = await vault_alone(root / "d3", sizes.paced) if ALONE else skip
        print(_line("the vault alone, per item", each))
        return {
            "bare": bare,
            "clean": clean,
            "offender": offender,
            "paced_bare": [statistics.median(bare_ms), pct(bare_ms, 99)],
            "paced_offender": [statistics.median(ms), pct(ms, 99)],
            "split_backlog": full,
            "split_paced": at_rate,
        }


# --no-alone: the vault-alone rounds skipped (one item at a time, ~25/s on a loaded machine:
# most of a run's time; they say nothing about the group commit)
ALONE = True


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def pairs(base: Path, count: int, argv: list[str]) -> int:
    """``--base``: part 1 in fresh processes, base and this tree alternately; one table."""
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for n in range(count):
        order = [("base", str(base)), ("this", None)]
        for label, tree in order if n % 2 == 0 else order[::-1]:
            start = loadavg()
            print(f"--- pair {n + 1}, {label} tree (load {start})", flush=True)
            cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--part", "1"]
            cmd.append("--figures")
            env = dict(os.environ)
            # Its own children too (the blob writer, ``python -m guardmail...``: the working
            # directory comes first in their sys.path, then PYTHONPATH).
            if tree:
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")]))
            done = subprocess.run(
                [*cmd, "--tree", tree] if tree else cmd,
                stdout=subprocess.PIPE,
                text=True,
                check=False,
                env=env,
                cwd=tree or None,
            )
            lines = done.stdout.splitlines()
            print("\n".join(lines[:-1]), flush=True)
            if done.returncode != 0 or not lines:
                print(f"    run failed (exit status {done.returncode})")
                return 1
            rows.append((label, f"{start} -> {loadavg()}", json.loads(lines[-1])))
    print("\n| run | load | bare /s | offender /s | archived p50 / p99 ms | bare p50 / p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, load, f in rows:
        (p50, p99), (b50, b99) = f["paced_offender"], f["paced_bare"]
        print(
            f"| {label} | {load} | {f['bare']:,.0f} | {f['offender']:,.0f} "
            f"({f['offender'] / f['bare']:.2f}x) | {p50:,.0f} / {p99:,.0f} | "
            f"{b50:,.0f} / {b99:,.0f} |"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--part",
        type=int,
        action="append",
        choices=(1, 3),
        help="1: throughput and latency; 3: many accounts",
    )
    parser.add_argument("--offender", type=int, help="offender messages in the backlog")
    parser.add_argument("--clean", type=int, help="clean messages in the backlog")
    parser.add_argument("--paced", type=int, help="messages sent at --rate for the latency")
    parser.add_argument("--rate", type=float, help="messages per second for the latency")
    parser.add_argument("--many-child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--base", type=Path, help="part 1 beside another checkout, in turns")
    parser.add_argument("--pairs", type=int, default=1, help="with --base: runs of each tree")
    parser.add_argument("--no-alone", action="store_true", help="skip the vault-alone rounds")
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)  # see _TREE
    parser.add_argument("--figures", action="store_true", help=argparse.SUPPRESS)  # JSON line
    args = parser.parse_args()
    global ALONE
    ALONE = not args.no_alone
    if args.base is not None:
        if not (args.base / "guardmail" / "__init__.py").is_file():
            parser.error(f"--base {args.base}: no guardmail package there")
        argv = sys.argv[1:]
        for flag in ("--base", "--pairs", "--part"):  # the children run part 1, one tree each
            while flag in argv:
                at = argv.index(flag)
                del argv[at : at + 2]
        return pairs(args.base.resolve(), args.pairs, argv)
    if args.many_child:
        kind, n, port, ca, tmp = args.many_child
        logs.setup(level="warning")
        result = asyncio.run(many_child(kind, int(n), int(port), Path(ca), Path(tmp)))
        print(json.dumps(result))
        return 0
    sizes = QUICK if args.quick else FULL
    sizes = replace(
        sizes,
        **{
            k: getattr(args, k)
            for k in ("offender", "clean", "paced", "rate")
            if getattr(args, k) is not None
        },
    )
    parts = set(args.part or (1, 3))
    logs.setup(level="warning")
    users = dict(USERS)
    users.update({f"v{i}": VICTIM_PW for i in range(1, 6)})
    users.update({f"user{i}": "pw" for i in range(sizes.accounts)})
    # Past its archive quota (10,000 by default) Prosody rewrites a user's whole archive for
    # every message: keep it out of the way of what is measured here.
    server = start_prosody(users, extra="storage_archive_item_limit = 10000000")
    try:
        print(
            f"prosody {_version()} on 127.0.0.1:{server.port}; python {sys.version.split()[0]}; "
            f"{os.cpu_count()} cores"
        )
        if 1 in parts:
            figures = asyncio.run(throughput_and_latency(server, sizes))
            if args.figures:
                print(json.dumps(figures), flush=True)
        if 3 in parts:
            n = sizes.accounts
            print(f"3. {n} accounts in one process (fresh process each; STARTTLS + SCRAM)")
            for label, kind in (("bare slixmpp clients", "bare"), ("guardmail watchers", "watch")):
                r = many(server, kind, n)
                per = (r["after_kb"] - r["before_kb"]) / n
                print(
                    f"   {label:<22} connect all {r['connect_s']:6.1f} s   VmRSS "
                    f"{r['before_kb'] / 1024:6.1f} -> {r['after_kb'] / 1024:6.1f} MB   "
                    f"{per:6.0f} KB/account"
                )
    finally:
        server.stop()
    return 0


def _version() -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "prosody"], capture_output=True, check=False
    )
    return done.stdout.decode() or "?"


if __name__ == "__main__":
    sys.exit(main())
