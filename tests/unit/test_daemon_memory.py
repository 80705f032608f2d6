"""The daemon caps glibc's malloc arenas at its start, unless the operator's environment does
(run in a child: the setting is process-wide)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = "from guardmail.daemon.memory import limit_arenas; print(limit_arenas())"


def probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_arenas_are_capped_with_glibc() -> None:
    assert probe() == "True"


def test_the_operators_malloc_arena_max_stands() -> None:
    assert probe(MALLOC_ARENA_MAX="4") == "False"
