"""Trusted timestamps travel in the bundle and check offline, by guardmail and as README says."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.config.evidence import TimestampConfig
from guardmail.daemon.timestamper import Timestamper
from guardmail.export.bundle import write_bundle
from guardmail.export.evidence import Criteria
from guardmail.export.selection import select
from guardmail.export.stamps import chosen
from guardmail.export.verify import verify_bundle
from guardmail.storage.base import TimestampRow
from guardmail.vault.notes import add_note
from tests.servers.tsa import TSA, make_certificates, start_tsa
from tests.unit.report_case import NOW, SAM, ReportCase, make_report_case


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("stamped")
    tsa = start_tsa(root / "tsa")
    case: ReportCase = make_report_case(root / "case")
    try:
        cfg = TimestampConfig(tsa_url=tsa.url, ca_file=tsa.ca_file, every_minutes=1)
        Timestamper(case.vault, cfg, clock=lambda: datetime.now(UTC)).step()
        add_note(case.vault, "Entries after the stamp.", files=[], now=NOW)
        evidence = select(case.vault.rows(), tenant="jane", criteria=Criteria(offenders=(SAM,)))
        out = root / "sam"
        write_bundle(case.vault, evidence, out, now=NOW, version="9.9")
        yield out
    finally:
        case.storage.close()
        tsa.close()


def test_a_bundle_carries_the_token_and_verifies(bundle: Path) -> None:
    index = json.loads((bundle / "log" / "timestamps.json").read_text())
    [stamp] = index["stamps"]
    assert (bundle / "log" / "timestamps" / f"head-{stamp['tree_size']}.tsr").is_file()
    assert index["tree_size"] > stamp["tree_size"] and stamp["consistency"]  # a real proof
    assert "log/timestamps.json" in (bundle / "SHA256SUMS").read_text()
    assert verify_bundle(bundle) == []


def _readme_commands(bundle: Path) -> list[str]:
    text = (bundle / "README.txt").read_text()
    section = text[text.index("6. Trusted timestamps") :]
    one = re.search(r"\n    (openssl ts -verify .*?-attime \d+)\n", section, re.S)
    loop = re.search(r"\n    (while read n at; do\n.*?done < \S+)\n", section, re.S)
    assert one and loop, section
    return [one.group(1), loop.group(1)]


def test_the_readme_openssl_commands_run_as_printed(bundle: Path, tmp_path: Path) -> None:
    one, loop = _readme_commands(bundle)
    run = subprocess.run(one, shell=True, cwd=bundle, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and "Verification: OK" in run.stdout, run.stderr
    run = subprocess.run(loop, shell=True, cwd=bundle, capture_output=True, text=True, timeout=30)
    assert "FAILED" not in run.stdout and run.stdout.count(": OK") >= 1, run.stdout
    # The same commands in a copy whose stamped head was changed fail.
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    head = next((copy / "log" / "timestamps").glob("head-*.json"))
    head.write_bytes(head.read_bytes().replace(b'"tree_size":', b'"tree_size": '))
    run = subprocess.run(one, shell=True, cwd=copy, capture_output=True, text=True, timeout=30)
    assert run.returncode != 0 and "Verification: OK" not in run.stdout
    run = subprocess.run(loop, shell=True, cwd=copy, capture_output=True, text=True, timeout=30)
    assert "FAILED" in run.stdout


def test_a_token_swapped_for_another_tsas_is_named(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    make_certificates(elsewhere)
    stranger = TSA(elsewhere)
    try:
        token = next((copy / "log" / "timestamps").glob("head-*.tsr"))
        data = token.with_suffix(".json").read_bytes()
        from guardmail.vault.timestamps import request

        reply, _ = request(stranger.url, data, timeout=20)
    finally:
        stranger.close()
    token.write_bytes(reply)
    problems = verify_bundle(copy)
    assert any(
        p.startswith(f"log: log/timestamps/{token.name}: the timestamp token does not")
        for p in problems
    ), problems
    assert any(p.startswith("changed: log/timestamps/") for p in problems)


def test_a_consistency_proof_that_does_not_join_is_named(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    index = copy / "log" / "timestamps.json"
    doc = json.loads(index.read_text())
    doc["stamps"][0]["consistency"] = ["00" * 32]
    index.write_text(json.dumps(doc))
    problems = verify_bundle(copy)
    assert any("no consistency proof joins it" in p for p in problems), problems


def _stamp(size: int) -> TimestampRow:
    return TimestampRow(tenant="t", tree_size=size, token=b"", gen_time="", tsa_url="", ca_pem="")


def test_a_bundle_takes_the_first_token_covering_each_entry_and_the_latest() -> None:
    stamps = [_stamp(n) for n in (3, 7, 12, 20)]
    assert [s.tree_size for s in chosen(stamps, [1, 2, 8])] == [3, 12, 20]
    assert [s.tree_size for s in chosen(stamps, [21])] == [20]  # newer than every token
    assert [s.tree_size for s in chosen(stamps, [7])] == [7, 20]
    assert chosen([], [1]) == []
