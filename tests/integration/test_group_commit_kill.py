"""SIGKILL of a process doing group commits, at random instants and at the ``vault.group`` crash
point: no item reported as acted on lacks its blob or its journal entry, and ``guardmail
evidence verify`` passes (issue 28); also with three tenants whose vaults share the database,
and so their group commits (one transaction for every tenant's entries)."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardmail.daemon.tenant import vault_dir
from guardmail.linker import DB_FILE
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Vault
from tests.chaos.group_writer import TENANT
from tests.integration.guardmail_proc import guardmail

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def run_and_kill(
    state: Path, round_: int, *, after: float | None, fault: str | None, tenants: list[str]
) -> list[str]:
    """Start the writer, kill it (SIGKILL after ``after`` seconds, or let it kill itself at
    ``fault``); the lines it wrote."""
    env = {k: v for k, v in os.environ.items() if k != "GUARDMAIL_FAULT"}
    env["PYTHONPATH"] = str(REPO)
    if fault is not None:
        env["GUARDMAIL_FAULT"] = fault
    out = state.parent / f"round-{round_}.out"
    with out.open("wb") as stdout:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.chaos.group_writer",
                str(state),
                str(round_),
                "8",
                ",".join(tenants),
            ],
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            if after is not None:
                # From the first report on: a kill before any commit proves nothing.
                deadline = time.monotonic() + 30
                while out.stat().st_size == 0 and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(after)
                proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == -signal.SIGKILL, err.decode(errors="replace")
    return out.read_text().splitlines()


CONFIG = """\
state_dir: {root}/var
sources:
  smtp_filter:
    listen: 127.0.0.1:9
    next_hop: 127.0.0.1:9
    tenants_dir: {root}/tenants.d
"""


@pytest.mark.parametrize("tenants", [[TENANT], [TENANT, "alice", "bob"]], ids=["one", "three"])
def test_killed_group_commits_leave_every_acted_item_with_its_blob_and_entry(
    tmp_path: Path, tenants: list[str]
) -> None:
    rng = random.Random(int(os.environ.get("GUARDMAIL_CHAOS_SEED", "28")))
    state = tmp_path / "var"
    config = tmp_path / "guardmail.yaml"
    if tenants == [TENANT]:
        config.write_text(f"state_dir: {state}\n")
    else:
        config.write_text(CONFIG.format(root=tmp_path))
        (tmp_path / "tenants.d").mkdir()
        for name in tenants[1:]:
            (tmp_path / "tenants.d" / f"{name}.yaml").write_text(
                f"name: {name}\nrecipients: [{name}@example.org]\n"
            )
    acted: dict[tuple[str, str], int] = {}
    plan: list[tuple[float | None, str | None]] = [(rng.uniform(0.0, 0.4), None) for _ in range(4)]
    plan += [(None, f"vault.group:{rng.randint(2, 40)}")]
    for round_, (after, fault) in enumerate(plan):
        for line in run_and_kill(state, round_, after=after, fault=fault, tenants=tenants):
            word, sha, number, tenant = line.split()  # lines are flushed whole
            assert word == "acted"
            acted[(tenant, sha)] = int(number)
    assert {t for t, _ in acted} == set(tenants)
    assert len(acted) > 50, "too few items were acted on to prove anything"
    storage = SQLiteStorage(state / DB_FILE)
    try:
        for tenant in tenants:
            vault = Vault(vault_dir(state, tenant), storage, tenant)
            archived = {r.sha256: r.seq for r in vault.rows(kind="archived")}
            for (owner, sha), seq in acted.items():
                if owner != tenant:
                    assert archived.get(sha) is None, f"{owner}'s {sha} in {tenant}'s journal"
                    continue
                assert archived.get(sha) == seq, f"acted on {sha} (entry {seq}) not in the journal"
                blob = vault.blobs.path(sha).read_bytes()
                assert hashlib.sha256(blob).hexdigest() == sha, f"blob {sha} lost"
    finally:
        storage.close()
    for tenant in tenants:
        which = [] if tenant == TENANT else ["--tenant", tenant]
        checked = guardmail(config, *which, "evidence", "verify")
        assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
