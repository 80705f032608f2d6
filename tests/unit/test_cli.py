"""The guardmail command: exit codes and output a person or a script relies on."""

import argparse
import importlib
import json
from pathlib import Path

import pytest

from guardmail.cli import COMMANDS, command_modules, main

CONFIG = """\
state_dir: {root}/var
offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
    patterns: ["*@burner.example", "re:^st[a4]lker[0-9]*@"]
    display_names: ["Stalker*"]
    action: quarantine
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "guardmail.yaml"
    path.write_text(CONFIG.format(root=tmp_path))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_accepts_a_valid_file(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "-c", str(config), "check-config")
    assert code == 0 and "OK (1 offenders" in out


def test_check_config_exits_2_with_file_line_col_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("offenders:\n  - name: X\n    patterns: ['re:(']\n    colour: red\n")
    code, _, err = run(capsys, "-c", str(bad), "check-config")
    assert code == 2
    lines = err.splitlines()
    assert any(line.startswith(f"{bad}:3:") and "offenders.0.patterns.0" in line for line in lines)
    assert any(line.startswith(f"{bad}:4:5: offenders.0.colour") for line in lines)


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "-c", str(tmp_path / "nope.yaml"), "check-config")
    assert code == 2 and "nope.yaml" in err


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            b"From: Someone <st4lker12@new.example>\r\n\r\n",
            {
                "action": "quarantine",
                "offender": "Example Offender",
                "rule": "patterns[1]: re:^st[a4]lker[0-9]*@",
                "header": "From",
            },
        ),
        (
            b"From: friend@x.example\r\nReply-To: a@burner.example\r\n\r\n",
            {
                "action": "quarantine",
                "offender": "Example Offender",
                "rule": "patterns[0]: *@burner.example",
                "header": "Reply-To",
            },
        ),
        (
            b"From: friend@x.example\r\n\r\n",
            {"action": "pass", "offender": None, "rule": None, "header": None},
        ),
    ],
)
def test_explain_json_names_action_offender_rule_and_header(
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    message: bytes,
    expected: dict[str, str | None],
) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(message)
    code, out, _ = run(capsys, "-c", str(config), "explain", str(eml), "--json")
    assert code == 0
    data = json.loads(out)
    assert {k: data[k] for k in expected} == expected


def test_explain_in_words_shows_the_normalised_identity(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes("From: STAL\u200bKER+x@Example.NET.\r\n\r\n".encode())
    code, out, _ = run(capsys, "-c", str(config), "explain", str(eml))
    assert code == 0
    assert "action:   quarantine" in out and "as:     stalker@example.net" in out


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (
            b"Subject: =?utf-8?b?!!!notbase64?=",
            "Subject: undecodable encoded-word (HeaderParseError: Base64 decoding error)",
        ),
        (
            b"Reply-To: " + b"(" * 1500 + b" x@y.example",
            "Reply-To: too deeply nested comments or groups; read loosely",
        ),
    ],
    ids=["bad-base64-subject", "deep-comments"],
)
def test_explain_names_a_header_it_could_not_read_instead_of_a_traceback(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], header: bytes, error: str
) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: stalker@example.net\r\n" + header + b"\r\n\r\nhi\r\n")
    code, out, err = run(capsys, "-c", str(config), "explain", str(eml))
    assert (code, err) == (0, "")
    assert "action:   quarantine" in out and f"unreadable: {error}" in out
    code, out, _ = run(capsys, "-c", str(config), "explain", str(eml), "--json")
    assert code == 0 and json.loads(out)["parse_errors"] == [error]


def test_explain_unreadable_message_exits_2(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "-c", str(config), "explain", str(tmp_path / "missing.eml"))
    assert code == 2 and "missing.eml" in err


def test_evidence_commands_on_an_empty_vault(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "-c", str(config), "evidence", "list", "--json")[:2] == (0, "")
    code, out, _ = run(capsys, "-c", str(config), "evidence", "verify")
    assert code == 0 and "0 entries intact" in out
    assert run(capsys, "-c", str(config), "evidence", "show", "1")[0] == 2


def test_schema_command_prints_the_committed_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema")
    committed = Path(__file__).parents[2] / "config" / "guardmail.schema.json"
    assert code == 0 and out == committed.read_text()


def test_explain_says_an_address_was_found_in_a_display_name(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(b'From: "x@burner.example" <friend@innocent.example>\r\n\r\n')
    code, out, _ = run(capsys, "-c", str(config), "explain", str(eml))
    assert code == 0
    assert "  header: From (display name): x@burner.example\n" in out
    assert "  found:  an address in the display name of From\n" in out
    assert (
        "  From (display name): <x@burner.example>  (an address in the display name of From)\n"
        in out
    )
    code, out, _ = run(capsys, "-c", str(config), "explain", str(eml), "--json")
    data = json.loads(out)
    assert data["header"] == "From (display name)"
    assert data["matches"][0]["found_in"] == "an address in the display name of From"


def test_explain_names_the_lookalike_letters_of_a_pattern_match(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes("From: st\u0430lker1@gmail.com\r\n\r\n".encode())
    code, out, _ = run(capsys, "-c", str(config), "explain", str(eml))
    assert code == 0
    assert "  rule:   patterns[1]: re:^st[a4]lker[0-9]*@\n" in out
    assert "  looks like stalker1@gmail.com: Cyrillic \u0430 (U+0430)\n" in out
    code, out, _ = run(capsys, "-c", str(config), "explain", str(eml), "--json")
    looks = "looks like stalker1@gmail.com: Cyrillic \u0430 (U+0430)"
    assert json.loads(out)["matches"][0]["looks_like"] == looks


def test_each_command_is_registered_by_the_module_the_cli_imports_for_it() -> None:
    for name, commands in COMMANDS.items():
        parser = argparse.ArgumentParser()
        importlib.import_module(f"guardmail.commands.{name}").register(parser.add_subparsers())
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        assert tuple(sub.choices) == commands, name
    # The command is found after the global options, whatever their form.
    for argv in (["run"], ["-c", "x.yaml", "run"], ["--config=x.yaml", "--tenant", "t", "run"]):
        assert [m.__name__ for m in command_modules(argv)] == ["guardmail.commands.basic"]
    assert len(command_modules(["--help"])) == len(command_modules(["no-such-command"])) == 12


def test_an_unknown_command_is_refused_naming_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evidnce", "list"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "invalid choice" in err and "'evidence'" in err
