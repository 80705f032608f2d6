"""How long `guardmail run` takes to start serving an ISP's milter with N tenants, and its memory
then, beside another checkout's guardmail in the same run (issue 27).

For each tree (``--base TREE`` first, then this one): a first start (empty state directory: each
tenant's vault, key and database made) and a restart (the state kept), N tenants in tenants.d
(10 offenders each, as bench/smtp_filter.py writes them). Printed: seconds from the process
start to ``smtp_filter.listening``, VmRSS and PSS at that moment. Asserts nothing.

    python bench/daemon_start.py --tenants 1000 --base /tmp/base
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def write_tenants(directory: Path, count: int) -> None:
    directory.mkdir(parents=True)
    for n in range(count):
        addresses = ", ".join(f"ex{n}-{k}@bad.example" for k in range(10))
        (directory / f"t{n:05d}.yaml").write_text(
            f"name: t{n:05d}\nrecipients: [c{n}@customer.test]\n"
            f"offenders:\n  - {{name: Ex {n}, addresses: [{addresses}]}}\n"
            "quarantine_mailbox: quarantine@example.test\n"
        )


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, PSS) of the process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    pss = next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
    return rss / 1024, pss / 1024


def start(tree: Path, root: Path, tenants: Path) -> tuple[float, float, float]:
    """Seconds to listening, VmRSS and PSS of `guardmail run` from ``tree``; then stopped."""
    config = root / "guardmail.yaml"
    config.write_text(
        f"state_dir: {root}/var\nlog_level: info\nsources:\n  smtp_filter:\n    mode: milter\n"
        f"    listen: unix:{root}/milter.sock\n    tenants_dir: {tenants}\n"
    )
    log = root / "guardmail.log"
    began = time.monotonic()
    with log.open("wb") as stderr:
        # `-m` puts the working directory first on sys.path: the tree's guardmail runs.
        proc = subprocess.Popen(
            [sys.executable, "-m", "guardmail", "-c", str(config), "run"],
            cwd=tree,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        while b"smtp_filter.listening" not in log.read_bytes():
            if proc.poll() is not None:
                raise RuntimeError(f"guardmail exited: {log.read_text()[-2000:]}")
            time.sleep(0.02)
        took = time.monotonic() - began
        rss, pss = memory_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return took, rss, pss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--base", type=Path, help="another checkout, measured first")
    args = parser.parse_args()
    trees = [("base", args.base.resolve())] if args.base else []
    trees.append(("this", HERE))
    print(f"{args.tenants} tenants, load average {os.getloadavg()[0]:.1f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="gm-start-"))
    try:
        tenants = work / "tenants.d"
        write_tenants(tenants, args.tenants)
        for name, tree in trees:
            root = work / name
            root.mkdir()
            for kind in ("first start", "restart"):
                took, rss, pss = start(tree, root, tenants)
                print(
                    f"{name:5} {kind:11} listening after {took:6.2f} s, "
                    f"VmRSS {rss:6.1f} MB, PSS {pss:6.1f} MB",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
