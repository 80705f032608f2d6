"""bench/aliases.py --quick runs and its figures are well-formed (never what they are: the
accuracy figures are measured, reported in bench/README.md, and not a test's to fix)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "aliases.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_aliases", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _bench()


@pytest.fixture(scope="module")
def report(bench: ModuleType) -> dict[str, Any]:
    result: dict[str, Any] = bench.run(quick=True)
    return result


def _fraction(x: object) -> bool:
    return isinstance(x, float) and 0.0 <= x <= 1.0


def test_the_labelled_set_has_both_sides(report: dict[str, Any], bench: ModuleType) -> None:
    d = report["default"]
    assert d["aliases"] > 0 and d["unrelated"] > 0
    assert d["aliases"] + d["unrelated"] == report["items"]
    # Every kind of alias is in the set, and no item is caught by the rules themselves.
    assert set(report["kinds"]) == set(bench.KINDS)
    assert all(k["items"] > 0 for k in report["kinds"].values())
    assert report["rules_passed"] == report["items"]
    assert "tests/hostile/corpus.py" in report["corpus"]


def test_accuracy_figures_are_well_formed(report: dict[str, Any], bench: ModuleType) -> None:
    thresholds = [s["threshold"] for s in report["sweep"]]
    assert thresholds == sorted(thresholds) and bench.DEFAULT_THRESHOLD in thresholds
    for s in [report["default"], *report["sweep"]]:
        assert _fraction(s["recall"])
        assert 0 <= s["false_positives"] <= s["unrelated"]
        assert 0 <= s["wrong_offender"] <= s["aliases"]
        assert math.isclose(s["fp_per_1000"], 1000 * s["false_positives"] / s["unrelated"])
    # A higher threshold never flags more.
    flagged = [round(s["recall"] * s["aliases"]) + s["false_positives"] for s in report["sweep"]]
    assert flagged == sorted(flagged, reverse=True)
    for k in report["kinds"].values():
        assert _fraction(k["recall"]) and _fraction(k["median_likelihood"])


def test_calibration_covers_every_item_once(report: dict[str, Any]) -> None:
    rows = report["calibration"]
    assert sum(r["items"] for r in rows) == report["items"]
    for r in rows:
        if r["items"]:
            assert _fraction(r["predicted"]) and _fraction(r["observed"])
        else:
            assert r["predicted"] is None and r["observed"] is None


def test_cost_is_reported_for_both_modes(report: dict[str, Any]) -> None:
    for mode in ("off", "on", "on_no_body"):
        c = report["cost"][mode]
        assert c["n"] > 0 and 0 < c["p50_us"] <= c["p99_us"]
    assert report["cost"]["off"]["n"] == report["cost"]["on"]["n"]
    # "on" split by outcome: every "on" decision is held or passed, and --quick holds some.
    split = report["cost"]["on_by_outcome"]
    assert set(split) == {"held", "passed"}
    assert split["held"]["n"] + split["passed"]["n"] == report["cost"]["on"]["n"]


def test_the_report_prints(report: dict[str, Any], bench: ModuleType, capsys: Any) -> None:
    bench.show(report)
    out = capsys.readouterr().out
    assert "at the default threshold" in out and "calibration" in out and "linker on" in out
    json.dumps(report)  # what --json prints


def _origins() -> ModuleType:
    path = BENCH.parent / "alias_origins.py"
    spec = importlib.util.spec_from_file_location("bench_alias_origins", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mail(sender: str, ip: str, client: str, day: int) -> tuple[str, bytes]:
    raw = (
        f"Received: from pc ([{ip}]) by mx.example; {day} Nov 2026 10:00:00 +0000\r\n"
        f"From: <{sender}>\r\nDate: {day} Nov 2026 10:00:00 +0000\r\n"
        f"User-Agent: {client}\r\n\r\nhi\r\n"
    )
    return sender, raw.encode()


def test_origin_calibration_counts_same_and_different_senders() -> None:
    # a writes twice from one IP and client; b and c share a relay's IP and client; d's second
    # message comes from its IP 60 days later (outside the window: no IP match).
    mail = [
        _mail("a@x.example", "81.2.69.1", "mutt/2.2.9", 1),
        _mail("a@x.example", "81.2.69.1", "mutt/2.2.9", 2),
        _mail("b@y.example", "81.2.69.9", "relay 1.0", 1),
        _mail("c@z.example", "81.2.69.9", "relay 1.0", 3),
    ]
    out = _origins().measure(mail)
    assert out["ip"]["same"] == 1 and out["ip"]["same_tried"] == 1
    assert out["ip"]["different"] == 2  # b's message matched c's profile, and c's b's
    assert out["ip+client"]["different"] == 2 and out["client"]["different"] == 2
    assert out["ip"]["different_pairs"] == 4 * 2  # each message against the 2 other senders
    late = [
        _mail("d@w.example", "81.2.69.5", "k9 6.1", 1),
        (
            "d@w.example",
            _mail("d@w.example", "81.2.69.5", "k9 6.1", 1)[1].replace(b" Nov ", b" Sep "),
        ),
    ]
    out = _origins().measure(late)
    assert out["ip"]["same"] == 0 and out["client"]["same"] == 1


def _hours() -> ModuleType:
    path = BENCH.parent / "alias_hours.py"
    spec = importlib.util.spec_from_file_location("bench_alias_hours", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("peak", "share"), [(0, 1.0), (0, 0.0), (12, 0.4), (23, 0.97)])
def test_a_habit_puts_its_share_in_its_three_hours(peak: int, share: float) -> None:
    import random

    habit = _hours().Habit(peak=peak, share=share)
    rng = random.Random(7)
    drawn = [habit.hour(rng) for _ in range(4000)]
    window = {(peak - 1) % 24, peak, (peak + 1) % 24}
    assert all(0 <= h < 24 for h in drawn)
    assert abs(sum(h in window for h in drawn) / len(drawn) - share) < 0.03
    assert len(set(drawn) - window) == (0 if share == 1.0 else 21)


def test_the_habits_generator_changes_only_the_hours(bench: ModuleType) -> None:
    even = bench.build(4, 40, 1, 24)
    habits = bench.build(4, 40, 1, 24, None, "habits")
    e_items, h_items = even[3], habits[3]
    assert [(s.label, s.truth, s.source) for s in e_items] == [
        (s.label, s.truth, s.source) for s in h_items
    ]
    generated = [(a, b) for a, b in zip(e_items, h_items, strict=True) if a.truth]
    # The same messages but for the Date (and what the hour is part of): the same senders.
    assert all(a.raw != b.raw for a, b in generated)
    assert all(a.identities == b.identities for a, b in generated)
    assert all(b"12:00:00 +0000" in a.raw for a, _ in generated)  # the first generator's


def test_hour_calibration_counts_same_and_different_senders() -> None:
    def mail(sender: str, hour: int) -> tuple[str, bytes]:
        raw = f"From: <{sender}>\r\nDate: 1 Nov 2026 {hour:02}:10:00 +0000\r\n\r\nhi\r\n"
        return sender, raw.encode()

    # a writes 21 times at 09h; b once at 10h (near a's habit), c once at 20h.
    ham = [mail("a@x.example", 9) for _ in range(21)]
    ham += [mail("b@y.example", 10), mail("c@z.example", 20)]
    out = _hours().calibration(ham)
    assert out["senders"] == 1 and out["shares"] == [1.0]
    assert out["same"] == 21 and out["same_tried"] == 21
    assert out["different"] == 1 and out["different_pairs"] == 2
    assert out["lr"] == 2.0


def test_every_missed_alias_is_listed_once(report: dict[str, Any]) -> None:
    d = report["default"]
    found = round(d["recall"] * d["aliases"])
    assert sum(m["items"] for m in report["missed"]) == d["aliases"] - found
    for m in report["missed"]:
        assert m["kind"] in report["kinds"] and 0 <= m["other_offender"] <= m["items"]
        assert 0.0 <= m["low"] <= m["high"] <= 1.0
