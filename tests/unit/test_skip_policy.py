"""The CI skip policy (tests/conftest.py): unlisted skips fail a CI run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ALLOWED_SKIPS, allowed_skips, unexpected_skips


def test_a_skip_not_in_the_allowlist_is_unexpected() -> None:
    prefixes = allowed_skips("tests/unit/test_x.py::test_a -- needs a GPU\n# comment\n\n")
    assert unexpected_skips(
        ["tests/unit/test_x.py::test_a[1]", "tests/unit/test_y.py::test_b"], prefixes
    ) == ["tests/unit/test_y.py::test_b"]


def test_an_allowlist_line_without_a_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="reason"):
        allowed_skips("tests/unit/test_x.py::test_a\n")


def test_the_project_allowlist_reads() -> None:
    allowed_skips(ALLOWED_SKIPS.read_text(encoding="utf-8"))


def test_a_ci_run_with_an_unlisted_skip_fails(tmp_path: Path) -> None:
    root = ALLOWED_SKIPS.parent.parent
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_runtest_logreport, pytest_sessionfinish  # noqa: F401\n"
    )
    (tmp_path / "test_s.py").write_text("import pytest\n\ndef test_s():\n    pytest.skip('x')\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "CI": "true", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
    assert "not in tests/allowed-skips.txt" in run.stdout
    assert "test_s.py::test_s" in run.stdout
