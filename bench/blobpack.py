"""A group's blobs as one file each (the vault today) against one pack file a group (not built).

Issue 28, step 3: the vault's blob phase makes a file per blob (temp file, made durable,
renamed, name made durable: ``BlobStore.put_many``, two ``syncfs`` for a group of 32 or more).
A pack would be one file a group and tenant: the group's blobs appended, one ``fsync``, renamed
into place, its directory fsync'd; the journal would hold (pack, offset, length) beside each
SHA-256. This prints both, in one process, in turns (files first in odd rounds, pack first in
even ones), on the same file system (``--dir``, default the temp directory, where bench/xmpp.py
keeps its vaults), for groups of ``--groups`` blobs of ``--size`` bytes: ms a group, p50 / p90,
and the files' own split (``BlobStore.put_many``'s laps) beside it. Nothing of the vault's
format changes here: this only measures what the change would buy (bench/README.md, "xblob").

    python bench/blobpack.py [--rounds 20] [--groups 10,100,500] [--size 400]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guardmail.vault.blobs import BlobStore, fsync_dir  # noqa: E402


def blobs(n: int, size: int, tag: str) -> list[tuple[bytes, str]]:
    raws = [(f"{tag} {k} ".encode() + b"x" * size)[:size] for k in range(n)]
    return [(r, hashlib.sha256(r).hexdigest()) for r in raws]


def pack(root: Path, group: list[tuple[bytes, str]], name: str) -> None:
    """One file for the whole group: written in one writev, fsync'd, renamed, directory fsync'd."""
    root.mkdir(mode=0o700, exist_ok=True)
    target = root / name
    tmp = root / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        views = [memoryview(r) for r, _ in group]
        while views:
            written = os.writev(fd, views[:1024])  # IOV_MAX
            while written and views:
                if written >= len(views[0]):
                    written -= len(views[0])
                    views.pop(0)
                else:
                    views[0] = views[0][written:]
                    written = 0
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    fsync_dir(root)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--groups", default="10,100,500", help="blobs a group, comma-separated")
    parser.add_argument("--size", type=int, default=400, help="bytes a blob (a chat stanza)")
    parser.add_argument("--dir", type=Path, default=None, help="where (default: temp directory)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.groups.split(",")]
    print(f"load {Path('/proc/loadavg').read_text().split()[0]}; {args.rounds} rounds in turns")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        store = BlobStore(Path(tmp) / "blobs")
        store.put_many(blobs(4096, 64, "warm"))  # the fan-out directories made, as in a vault
        for n in sizes:
            ms: dict[str, list[float]] = {"files": [], "pack": []}
            laps: dict[str, float] = {}
            for r in range(args.rounds):
                ways = ["files", "pack"] if r % 2 == 0 else ["pack", "files"]
                for way in ways:
                    group = blobs(n, args.size, f"{way} {n} {r}")
                    began = time.perf_counter()
                    if way == "files":
                        store.put_many(group, timing=laps)
                    else:
                        pack(Path(tmp) / "packs", group, f"{n}-{r}")
                    ms[way].append((time.perf_counter() - began) * 1000)
            for way, got in ms.items():
                q = statistics.quantiles(got, n=10)
                p50 = statistics.median(got)
                print(
                    f"{n:5} blobs of {args.size} B, {way:5}: ms a group p50 {p50:8.2f}"
                    f"  p90 {q[-1]:8.2f}  ({p50 * 1000 / n:7.1f} us a blob)"
                )
            split = ", ".join(
                f"{k} {v * 1000 / args.rounds:.2f}" for k, v in sorted(laps.items()) if k != "blobs"
            )
            print(f"      files, ms a group on average: {split}")
    print(f"load {Path('/proc/loadavg').read_text().split()[0]} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
