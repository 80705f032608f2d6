"""Coverage-guided fuzzing of every parser a sender, a server or a local client reaches.

    pip install -e '.[fuzz]'                     # atheris (libFuzzer)
    python bench/fuzz.py [--runs 1000000] [--target NAME ...] [--timeout 2]

Each target of tests/fuzz/targets.py runs in its own process under atheris, seeded with the hostile
corpus (cut to 8 KiB), for ``--runs`` inputs of up to 8 KiB, with libFuzzer's per-input time limit
(``--timeout`` seconds: a hang is a failure). Prints per target: inputs run, inputs a second,
coverage, and any crash (its input is saved as crash-* in the working directory; make it a
regression test). Exit 1 if any target crashed or hung. The suite runs a short hypothesis run of
the same targets.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Inputs up to 8 KiB: instrumented code runs ~20x slower, so larger ones would trip the per-input
# time limit on linear work; megabyte inputs are the hostile corpus's job (tests/hostile/).
MAX_LEN = 8192
# Identities up to 1 KiB: instrumented normalisation of 8 KiB runs ~30 inputs/s, too slow for a
# million; long addresses and names (linear work) are the hostile corpus's job.
MAX_LENS = {"identities": 1024}
sys.path.insert(0, str(REPO))


def child(name: str, corpus_dir: str, runs: int, timeout: int) -> None:
    import atheris

    with atheris.instrument_imports(include=["guardmail"]):
        from tests.fuzz.targets import TARGETS

    target = TARGETS[name]
    argv = [
        sys.argv[0],
        corpus_dir,
        f"-runs={runs}",
        f"-timeout={timeout}",
        f"-max_len={MAX_LENS.get(name, MAX_LEN)}",
        "-rss_limit_mb=2048",
    ]
    atheris.Setup(argv, target)
    atheris.Fuzz()


def seed(corpus_dir: Path) -> None:
    from tests.hostile.corpus import corpus

    for n, hostile in enumerate(corpus()):
        (corpus_dir / f"seed-{n}").write_bytes(hostile.raw[:MAX_LEN])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--timeout", type=int, default=2, help="seconds allowed per input")
    parser.add_argument("--target", action="append", help="a target name (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.corpus, args.runs, args.timeout)
        return 0
    from tests.fuzz.targets import TARGETS

    failed = False
    for name in args.target or sorted(TARGETS):
        with tempfile.TemporaryDirectory(prefix=f"guardmail-fuzz-{name}-") as tmp:
            seed(Path(tmp))
            started = time.monotonic()
            proc = subprocess.run(
                [sys.executable, __file__, "--child", name, "--corpus", tmp,
                 "--runs", str(args.runs), "--timeout", str(args.timeout)],
                capture_output=True, text=True, check=False, cwd=os.getcwd(),
            )  # fmt: skip
            seconds = time.monotonic() - started
        done = re.search(r"Done (\d+) runs", proc.stderr)
        cov = re.findall(r"cov: (\d+)", proc.stderr)
        runs = int(done.group(1)) if done else 0
        ok = proc.returncode == 0 and done is not None
        failed |= not ok
        print(
            f"{name:16} {runs:>9,} inputs in {seconds:6.0f} s ({runs / max(seconds, 1e-9):,.0f}/s),"
            f" coverage {cov[-1] if cov else '?'} edges: {'ok' if ok else 'CRASH OR HANG'}"
        )
        if not ok:
            print("\n".join(proc.stderr.splitlines()[-25:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
