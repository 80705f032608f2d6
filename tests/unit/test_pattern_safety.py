"""No pattern a user writes can stall the daemon, block everyone, or slip past config checks."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.config.settings import load_config
from guardmail.core.item import Identity
from guardmail.core.patterns import MAX_TEXT, subject
from guardmail.core.rules import Action, OffenderRule, RuleSet, decide
from guardmail.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, tzinfo=UTC)
MAIN = "guardmail.yaml"


def config_issues(root: Path, text: str) -> list[str]:
    (root / MAIN).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(MAIN, cwd=root)
    return [str(issue) for issue in caught.value.issues]


def offender_with(key: str, value: str) -> str:
    return f"offenders:\n  - name: Ex\n    {key}: [{json.dumps(value)}]\n"


# Shapes that backtrack exponentially on "aaa...a!" in Python's re; none matches the sender.
CATASTROPHIC = ["(a+)+$", "^(a|a)*$", "^(a|aa)+$", "(.*a){12}$", "^(\\w+\\s?)*$"]


def test_catastrophic_regex_judges_a_hostile_sender_promptly(tmp_path: Path) -> None:
    # With Python's backtracking re this took minutes (2**40 ways to split the a's): run it in a
    # child with a generous timeout, and assert only that the judgement finished.
    patterns = ", ".join(json.dumps(f"re:{p}") for p in CATASTROPHIC)
    (tmp_path / MAIN).write_text(
        f"state_dir: {tmp_path}/var\n"
        f"offenders:\n  - name: Ex\n    patterns: [{patterns}, '*@burner.example']\n"
    )
    message = tmp_path / "hostile.eml"
    sender = "a" * 40 + "!@x"
    message.write_bytes(f"From: {sender}\r\nSubject: hi\r\n\r\nbody\r\n".encode())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "guardmail", "-c", str(tmp_path / MAIN)]
        + ["explain", str(message), "--json"],
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["action"] == "pass"


@pytest.mark.parametrize(
    ("regex", "feature"),
    [
        ("^(st)alker\\1@", "invalid escape sequence: \\1"),
        ("^stalker(?=[0-9])", "invalid perl operator: (?="),
        ("(?<!good)stalker@", "invalid perl operator: (?<!"),
        ("(?>st)alker", "invalid perl operator: (?>"),
        ("stalker[0-9]++@", "bad repetition operator: ++"),
    ],
)
def test_regex_that_re2_cannot_run_is_refused_at_load_saying_why(
    tmp_path: Path, regex: str, feature: str
) -> None:
    [issue] = config_issues(tmp_path, offender_with("patterns", f"re:{regex}"))
    assert issue.startswith("guardmail.yaml:3:16: offenders.0.patterns.0: ")
    assert f"cannot run on RE2 ({feature})" in issue
    assert "no pattern takes more than linear time" in issue


def test_regex_that_does_not_compile_at_all_keeps_pythons_reason(tmp_path: Path) -> None:
    [issue] = config_issues(tmp_path, offender_with("patterns", "re:^st[a4lker"))
    assert issue == (
        "guardmail.yaml:3:16: offenders.0.patterns.0: regex '^st[a4lker' does not compile: "
        "unterminated character set at position 3"
    )


@pytest.mark.parametrize("pattern", ["*", "*@*", "re:.*", "re:^", "re:$", "re:@", "??*", "*.*"])
def test_pattern_matching_every_sender_is_refused_at_load(tmp_path: Path, pattern: str) -> None:
    [issue] = config_issues(tmp_path, offender_with("patterns", pattern))
    assert issue.startswith("guardmail.yaml:3:16: offenders.0.patterns.0: ")
    assert "matches every sender" in issue and "block everyone's mail" in issue


@pytest.mark.parametrize("glob", ["*", "?*", "*?"])
def test_display_name_glob_matching_every_name_is_refused_at_load(
    tmp_path: Path, glob: str
) -> None:
    [issue] = config_issues(tmp_path, offender_with("display_names", glob))
    assert issue.startswith("guardmail.yaml:3:21: offenders.0.display_names.0: ")
    assert "matches every name" in issue


def test_narrow_patterns_and_python_end_anchor_are_accepted(tmp_path: Path) -> None:
    (tmp_path / MAIN).write_text(
        "offenders:\n  - name: Ex\n"
        "    patterns: ['*@burner.example', 're:^st[a4]lker[0-9]*@', 're:@x\\.org\\Z']\n"
        "    display_names: ['Creep *']\n"
    )
    settings = load_config(MAIN, cwd=tmp_path).settings
    rules = RuleSet([OffenderRule(name="Ex", patterns=tuple(settings.offenders[0].patterns))])
    hit = Identity(source="From", address="anyone@x.org", display_name=None)
    assert decide([hit], rules, now=NOW).action is Action.QUARANTINE


@pytest.mark.parametrize("key", ["maildir", "tenants"])
def test_empty_directory_path_is_refused_at_load(tmp_path: Path, key: str) -> None:
    source = {
        "maildir": "sources:\n  maildir:\n    - path: ''\n",
        "tenants": "sources:\n  smtp_filter:\n    next_hop: 127.0.0.1:10026\n    tenants_dir: ''\n",
    }[key]
    [issue] = config_issues(tmp_path, source)
    place = {"maildir": "3:13: sources.maildir.0.path", "tenants": "4:18: sources.smtp_filter"}
    assert issue.startswith(f"guardmail.yaml:{place[key]}")
    assert "is empty, which would mean the directory guardmail starts in" in issue


def test_long_identity_is_matched_by_both_its_ends() -> None:
    rules = RuleSet(
        [
            OffenderRule(name="Burner", patterns=("*@burner.example",)),
            OffenderRule(name="Prefix", patterns=("re:^st[a4]lker[0-9]*@",)),
        ]
    )
    padded = "st4lker" + "7" * (10 * MAX_TEXT) + "@burner.example"
    verdict = decide([Identity(source="From", address=padded, display_name=None)], rules, now=NOW)
    assert {m.offender for m in verdict.matches} == {"Burner", "Prefix"}
    assert len(subject(padded)) == MAX_TEXT


def test_undecodable_header_bytes_do_not_break_matching() -> None:
    rules = RuleSet([OffenderRule(name="Ex", patterns=("*@burner.example", "re:^x.y@"))])
    surrogate = "x\udcffy@burner.example"  # what surrogateescape makes of a stray byte
    verdict = decide(
        [Identity(source="From", address=surrogate, display_name=None)], rules, now=NOW
    )
    assert [m.rule for m in verdict.matches] == [
        "patterns[0]: *@burner.example",
        "patterns[1]: re:^x.y@",
    ]
