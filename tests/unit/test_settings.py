"""Loading the configuration: typed settings, resolved paths, and issues naming file:line:col."""

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema  # no stubs in the dev set (types-jsonschema)
import pydantic
import pytest
import yaml

from guardmail.config.settings import LoadedConfig, load_config, render_schema, settings_json_schema
from guardmail.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "guardmail.example.yaml"
SCHEMA_FILE = REPO / "config" / "guardmail.schema.json"
MAIN = "guardmail.yaml"


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def load(root: Path, files: dict[str, str | bytes]) -> LoadedConfig:
    write(root, files)
    return load_config(MAIN, cwd=root)


def issues(root: Path, files: dict[str, str | bytes]) -> list[str]:
    write(root, files)
    with pytest.raises(ConfigError) as caught:
        load_config(MAIN, cwd=root)
    return [str(issue) for issue in caught.value.issues]


def where(issue: str) -> str:
    """``FILE:LINE:COL: key.path`` of a printed issue."""
    location, path, _ = issue.split(": ", 2)
    return f"{location}: {path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """A configuration (file name -> content) and every issue it must produce, in order.

    ``{root}`` in an expected issue stands for the start directory.
    """

    id: str
    files: dict[str, str | bytes]
    expected: list[str] = field(default_factory=list)


ONE_OFFENDER = "offenders:\n  - name: Ex\n    addresses: [ex@example.net]\n"

CASES = [
    Case(
        id="timestamp-authority-that-is-not-an-http-url",
        files={
            MAIN: "evidence:\n  timestamp:\n    tsa_url: ftp://tsa.example/\n    every_minutes: 0\n"
        },
        expected=[
            "guardmail.yaml:3:14: evidence.timestamp.tsa_url: 'ftp://tsa.example/' is not an "
            "http:// or https:// URL",
            "guardmail.yaml:4:20: evidence.timestamp.every_minutes: should be greater than or "
            "equal to 1 (got 0)",
        ],
    ),
    Case(
        id="yaml-syntax-error",
        files={MAIN: "offenders:\n  - name: [not a string\n"},
        expected=[
            "guardmail.yaml:3:1: (yaml): expected ',' or ']', but got '<stream end>' "
            "(while parsing a flow sequence at line 2, column 11)"
        ],
    ),
    Case(
        id="python-tag-refused-by-the-safe-loader",
        files={MAIN: "state_dir: !!python/object/apply:os.system [echo]\n"},
        expected=[
            "guardmail.yaml:1:12: (yaml): could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object/apply:os.system'"
        ],
    ),
    Case(
        id="unknown-key-with-a-suggestion",
        files={MAIN: "offenders:\n  - name: Ex\n    adresses: [ex@example.net]\n"},
        expected=[
            "guardmail.yaml:3:5: offenders.0.adresses: unknown key 'adresses'; "
            "did you mean 'addresses'?"
        ],
    ),
    Case(
        id="unknown-key-listing-the-allowed-ones",
        files={MAIN: "colour: blue\n"},
        expected=[
            "guardmail.yaml:1:1: colour: unknown key 'colour'; expected one of: state_dir, "
            "tenant, offenders, offenders_files, sources, log_format, log_level, warning, "
            "metrics, case, aliases, impersonation, evidence"
        ],
    ),
    Case(
        id="evidence-authserv-id-and-nameserver",
        files={
            MAIN: 'evidence:\n  authserv_id: "mx.example.org; x"\n  nameservers: [dns.example]\n'
        },
        expected=[
            "guardmail.yaml:2:16: evidence.authserv_id: 'mx.example.org; x' is not an "
            "authserv-id (one token, no spaces or ';')",
            "guardmail.yaml:3:16: evidence.nameservers: 'dns.example' is not an IP address "
            "or IP:PORT",
        ],
    ),
    Case(
        id="unknown-key-in-a-maildir-source",
        files={MAIN: "sources:\n  maildir:\n    - path: ./m\n      rescan: 5\n"},
        expected=[
            "guardmail.yaml:4:7: sources.maildir.0.rescan: unknown key 'rescan'; "
            "did you mean 'rescan_seconds'?"
        ],
    ),
    Case(
        id="string-where-a-list-is-expected",
        files={MAIN: "offenders:\n  - name: Ex\n    addresses: stalker@x.example\n"},
        expected=[
            "guardmail.yaml:3:16: offenders.0.addresses: should be a valid list "
            "(got 'stalker@x.example')"
        ],
    ),
    Case(
        id="word-where-a-number-is-expected",
        files={MAIN: "sources:\n  maildir:\n    - path: ./m\n      rescan_seconds: soon\n"},
        expected=[
            "guardmail.yaml:4:23: sources.maildir.0.rescan_seconds: should be a valid number, "
            "unable to parse string as a number (got 'soon')"
        ],
    ),
    Case(
        id="empty-value-where-a-list-is-expected",
        files={MAIN: "offenders:\nstate_dir: ./v\n"},
        expected=["guardmail.yaml:1:11: offenders: should be a valid list (got an empty value)"],
    ),
    Case(
        id="list-where-a-path-is-expected",
        files={MAIN: "state_dir: [a, b]\n"},
        expected=["guardmail.yaml:1:12: state_dir: should be a path (a string) (got a list)"],
    ),
    Case(
        id="unknown-action",
        files={MAIN: ONE_OFFENDER + "    action: delete\n"},
        expected=[
            "guardmail.yaml:4:13: offenders.0.action: should be 'quarantine' or 'block' "
            "(got 'delete')"
        ],
    ),
    Case(
        id="regex-that-does-not-compile",
        files={
            MAIN: 'offenders:\n  - name: Ex\n    patterns: ["*@burner.example", "re:^st[a4lker"]\n'
        },
        expected=[
            "guardmail.yaml:3:36: offenders.0.patterns.1: regex '^st[a4lker' does not "
            "compile: unterminated character set at position 3"
        ],
    ),
    Case(
        id="empty-regex",
        files={MAIN: "offenders:\n  - name: Ex\n    patterns: ['re:']\n"},
        expected=["guardmail.yaml:3:16: offenders.0.patterns.0: 're:' has no regex after 're:'"],
    ),
    Case(
        id="glob-with-unbalanced-bracket",
        files={MAIN: "offenders:\n  - name: Ex\n    display_names: ['St[a4lker*']\n"},
        expected=[
            "guardmail.yaml:3:21: offenders.0.display_names.0: glob 'St[a4lker*' opens '[' at "
            "position 2 without a closing ']' (write '[[]' for a literal '[')"
        ],
    ),
    Case(
        id="address-without-at-sign",
        files={MAIN: "offenders:\n  - name: Ex\n    addresses: [stalker]\n"},
        expected=[
            "guardmail.yaml:3:17: offenders.0.addresses.0: 'stalker' is not an e-mail address "
            "(local@domain); a whole domain goes under 'domains', a glob under 'patterns'"
        ],
    ),
    Case(
        id="domain-written-as-a-glob",
        files={MAIN: "offenders:\n  - name: Ex\n    domains: ['*.harass.example']\n"},
        expected=[
            "guardmail.yaml:3:15: offenders.0.domains.0: '*.harass.example' is not a domain "
            "name; write it bare, like 'harass.example' (its subdomains are included; globs go "
            "under 'patterns')"
        ],
    ),
    Case(
        id="blank-offender-name",
        files={MAIN: "offenders:\n  - name: '  '\n    jids: [x@xmpp.example]\n"},
        expected=[
            "guardmail.yaml:2:11: offenders.0.name: '  ' is empty; "
            "write a value or leave the key out"
        ],
    ),
    Case(
        id="offender-that-would-match-nothing",
        files={MAIN: "offenders:\n  - name: Ex\n    action: block\n"},
        expected=[
            "guardmail.yaml:2:5: offenders.0: offender 'Ex' has no addresses, patterns, "
            "domains, display_names or jids, so nothing of theirs would be blocked"
        ],
    ),
    Case(
        id="offender-without-a-name",
        files={MAIN: "offenders:\n  - addresses: [ex@example.net]\n"},
        expected=["guardmail.yaml:2:5: offenders.0.name: required key 'name' is missing"],
    ),
    Case(
        id="tenant-that-is-not-a-directory-name",
        files={MAIN: "tenant: ..\n"},
        expected=[
            "guardmail.yaml:1:9: tenant: tenant '..' must be lower-case letters, digits, '_', "
            "'.' or '-' (and not '.' or '..'): it names a directory"
        ],
    ),
    Case(
        id="quarantine-folder-with-leading-dot",
        files={
            MAIN: "sources:\n  maildir:\n    - path: ./m\n      quarantine_folder: .Quarantine\n"
        },
        expected=[
            "guardmail.yaml:4:26: sources.maildir.0.quarantine_folder: '.Quarantine' is not a "
            "Maildir++ folder name (no '/', no leading '.'; 'Quarantine' is stored as .Quarantine)"
        ],
    ),
    Case(
        id="rescan-period-not-positive",
        files={MAIN: "sources:\n  maildir:\n    - path: ./m\n      rescan_seconds: 0\n"},
        expected=[
            "guardmail.yaml:4:23: sources.maildir.0.rescan_seconds: should be greater than 0 "
            "(got 0)"
        ],
    ),
    Case(
        id="repeated-yaml-key",
        files={MAIN: ONE_OFFENDER + "    name: Other\n"},
        expected=[
            "guardmail.yaml:4:5: offenders.0.name: key 'name' is repeated (first at line 2); "
            "YAML would silently keep only the last"
        ],
    ),
    Case(
        id="non-string-key",
        files={MAIN: "1: one\n"},
        expected=["guardmail.yaml:1:1: 1: Keys should be strings (got 1)"],
    ),
    Case(
        id="duplicate-offender-names-ignoring-case",
        files={MAIN: ONE_OFFENDER + "  - name: EX\n    jids: [ex@xmpp.example]\n"},
        expected=[
            "guardmail.yaml:4:11: offenders.1.name: offender 'EX' is already defined at "
            "guardmail.yaml:2 (names are compared ignoring case)"
        ],
    ),
    Case(
        id="duplicate-offender-across-an-offenders-file",
        files={
            MAIN: ONE_OFFENDER + "offenders_files: ['offenders.d/*.yaml']\n",
            "offenders.d/a.yaml": "offenders:\n  - name: ' ex'\n    domains: [ex.example]\n",
        },
        expected=[
            "offenders.d/a.yaml:2:11: offenders.0.name: offender 'ex' is already defined at "
            "guardmail.yaml:2 (names are compared ignoring case)"
        ],
    ),
    Case(
        id="missing-offenders-file",
        files={MAIN: ONE_OFFENDER + "offenders_files:\n  - exes.yaml\n"},
        expected=[
            "guardmail.yaml:5:5: offenders_files.0: offenders file {root}/exes.yaml does not "
            "exist (relative to {root})"
        ],
    ),
    Case(
        id="offenders-file-that-is-a-directory",
        files={MAIN: "offenders_files: [offenders.d]\n", "offenders.d/a.yaml": "offenders: []\n"},
        expected=[
            "guardmail.yaml:1:19: offenders_files.0: cannot read {root}/offenders.d: Is a directory"
        ],
    ),
    Case(
        id="unknown-key-in-an-offenders-file-names-that-file",
        files={
            MAIN: "offenders_files: [exes.yaml]\n",
            "exes.yaml": "offenders:\n  - name: Ex\n    jid: [ex@xmpp.example]\n",
        },
        expected=["exes.yaml:3:5: offenders.0.jid: unknown key 'jid'; did you mean 'jids'?"],
    ),
    Case(
        id="syntax-error-in-an-offenders-file",
        files={MAIN: "offenders_files: [exes.yaml]\n", "exes.yaml": "offenders: [\n"},
        expected=[
            "exes.yaml:2:1: (yaml): expected the node content, but found '<stream end>' "
            "(while parsing a flow node at line 2, column 1)"
        ],
    ),
    Case(
        id="offenders-file-with-other-keys",
        files={MAIN: "offenders_files: [exes.yaml]\n", "exes.yaml": "state_dir: /x\n"},
        expected=[
            "exes.yaml:1:1: offenders: required key 'offenders' is missing",
            "exes.yaml:1:1: state_dir: unknown key 'state_dir'; expected one of: offenders",
        ],
    ),
    Case(
        id="empty-offenders-file",
        files={MAIN: "offenders_files: [exes.yaml]\n", "exes.yaml": "# nobody yet\n"},
        expected=[
            "exes.yaml:1:1: (document): expected a mapping with keys such as 'offenders'; "
            "the file is empty"
        ],
    ),
    Case(
        id="empty-main-file",
        files={MAIN: ""},
        expected=[
            "guardmail.yaml:1:1: (document): expected a mapping with keys such as 'state_dir', "
            "'tenant', 'offenders', 'offenders_files', 'sources', 'log_format', 'log_level', "
            "'warning', 'metrics', 'case', 'aliases', 'impersonation', 'evidence'; "
            "the file is empty"
        ],
    ),
    Case(
        id="top-level-list",
        files={MAIN: "# offenders\n- name: Ex\n"},
        expected=[
            "guardmail.yaml:2:1: (document): expected a mapping with keys such as 'state_dir', "
            "'tenant', 'offenders', 'offenders_files', 'sources', 'log_format', 'log_level', "
            "'warning', 'metrics', 'case', 'aliases', 'impersonation', 'evidence'; "
            "found a list"
        ],
    ),
    Case(
        id="main-file-missing",
        files={},
        expected=[
            "guardmail.yaml:1:1: (file): cannot read {root}/guardmail.yaml: "
            "No such file or directory"
        ],
    ),
    Case(
        id="main-file-not-utf8",
        files={MAIN: b"tenant: caf\xe9\n"},
        expected=[
            "guardmail.yaml:1:1: (file): cannot read {root}/guardmail.yaml: "
            "not UTF-8 text (byte 11 is 0xe9)"
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_config_error_is_reported_with_file_line_column_and_key(
    tmp_path: Path, case: Case
) -> None:
    expected = [e.format(root=tmp_path) for e in case.expected]
    assert issues(tmp_path, case.files) == expected


def test_every_issue_in_every_file_is_reported_sorted_by_file_and_line(tmp_path: Path) -> None:
    found = issues(
        tmp_path,
        {
            MAIN: "log_level: loud\n"
            "offenders_files: [b.yaml, a.yaml]\n"
            "offenders:\n"
            "  - name: Ex\n"
            "    addresses: [nobody]\n"
            "tenant: Alice\n",
            "a.yaml": "offenders:\n  - name: ex\n    jids: [ex@xmpp.example]\n",
            "b.yaml": "offenders:\n  - name: B\n    patterns: ['re:(']\n",
        },
    )
    assert [where(issue) for issue in found] == [
        "a.yaml:2:11: offenders.0.name",
        "b.yaml:3:16: offenders.0.patterns.0",
        "guardmail.yaml:1:12: log_level",
        "guardmail.yaml:5:17: offenders.0.addresses.0",
        "guardmail.yaml:6:9: tenant",
    ]


def test_offenders_files_are_checked_even_when_the_main_file_has_errors(tmp_path: Path) -> None:
    found = issues(
        tmp_path,
        {MAIN: "log_level: loud\noffenders_files: [7, missing.yaml]\n"},
    )
    assert [where(issue) for issue in found] == [
        "guardmail.yaml:1:12: log_level",
        "guardmail.yaml:2:19: offenders_files.0",
        "guardmail.yaml:2:22: offenders_files.1",
    ]
    assert found[2].endswith(
        f"offenders file {tmp_path}/missing.yaml does not exist (relative to {tmp_path})"
    )


def test_files_outside_the_start_directory_are_named_by_absolute_path(tmp_path: Path) -> None:
    write(tmp_path, {"etc/guardmail.yaml": "colour: blue\n"})
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "etc" / MAIN, cwd=tmp_path / "elsewhere")
    assert str(caught.value).startswith(f"{tmp_path}/etc/guardmail.yaml:1:1: colour: ")


def test_relative_paths_resolve_against_the_start_directory(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {
            MAIN: "sources:\n  maildir:\n    - path: mail/inbox\n      create: true\n"
            "    - path: /srv/mail\n      name: work\n      create: true\n"
        },
    )
    assert loaded.path == tmp_path / MAIN
    assert loaded.settings.state_dir == tmp_path / "var"
    assert [m.path for m in loaded.settings.sources.maildir] == [
        tmp_path / "mail" / "inbox",
        Path("/srv/mail"),
    ]
    assert [m.name for m in loaded.settings.sources.maildir] == [None, "work"]


def test_start_directory_defaults_to_the_process_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, {MAIN: "state_dir: ./state\n"})
    monkeypatch.chdir(tmp_path)
    loaded = load_config(MAIN)
    assert (loaded.path, loaded.settings.state_dir) == (tmp_path / MAIN, tmp_path / "state")


def test_offenders_from_files_and_globs_are_appended_in_order(tmp_path: Path) -> None:
    def offender(name: str) -> str:
        return f"offenders:\n  - name: {name}\n    domains: [{name.lower()}.example]\n"

    loaded = load(
        tmp_path,
        {
            MAIN: ONE_OFFENDER + "offenders_files:\n"
            "  - lists/z.yaml\n"
            "  - offenders.d/*.yaml\n"
            "  - nothing.d/*.yaml\n"
            "  - lists/z.yaml\n",
            "lists/z.yaml": offender("Zed"),
            "offenders.d/b.yaml": offender("Bee"),
            "offenders.d/a.yaml": offender("Ay"),
            "offenders.d/notes.txt": "not read",
        },
    )
    assert [o.name for o in loaded.settings.offenders] == ["Ex", "Zed", "Ay", "Bee"]
    assert loaded.files == (
        tmp_path / MAIN,
        tmp_path / "lists/z.yaml",
        tmp_path / "offenders.d/a.yaml",
        tmp_path / "offenders.d/b.yaml",
    )
    assert loaded.settings.offenders_files == [
        f"{tmp_path}/lists/z.yaml",
        f"{tmp_path}/offenders.d/*.yaml",
        f"{tmp_path}/nothing.d/*.yaml",
        f"{tmp_path}/lists/z.yaml",
    ]


def test_values_are_typed_stripped_and_defaulted(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        {
            MAIN: "tenant: alice\nlog_format: json\noffenders:\n"
            "  - name: '  Ex  '\n    addresses: [' ex@example.net ']\n    jids: [' ex@x ']\n"
            "sources:\n  maildir:\n    - path: m\n      create: true\n"
            "      rescan_seconds: '2.5'\n"
        },
    ).settings
    offender = settings.offenders[0]
    assert (offender.name, offender.addresses, offender.jids) == (
        "Ex",
        ["ex@example.net"],
        ["ex@x"],
    )
    assert (offender.action, offender.patterns, offender.domains) == ("quarantine", [], [])
    assert (settings.tenant, settings.log_format, settings.log_level) == ("alice", "json", "info")
    maildir = settings.sources.maildir[0]
    assert (maildir.quarantine_folder, maildir.rescan_seconds) == ("Quarantine", 2.5)


def test_anchors_and_merge_keys_are_allowed_and_not_taken_for_repeated_keys(
    tmp_path: Path,
) -> None:
    settings = load(
        tmp_path,
        {
            MAIN: "offenders:\n"
            "  - &base\n    name: Ex\n    domains: [ex.example]\n    action: block\n"
            "  - <<: *base\n    name: Ex2\n    action: quarantine\n"
        },
    ).settings
    assert [(o.name, o.domains, o.action) for o in settings.offenders] == [
        ("Ex", ["ex.example"], "block"),
        ("Ex2", ["ex.example"], "quarantine"),
    ]


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load(tmp_path, {MAIN: ONE_OFFENDER}).settings
    with pytest.raises(pydantic.ValidationError):
        settings.offenders[0].name = "Other"  # type: ignore[misc]


def test_example_config_matches_the_schema_and_loads(tmp_path: Path) -> None:
    document = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(settings_json_schema()).validate(document)
    loaded = load_config(EXAMPLE, cwd=tmp_path)
    assert loaded.settings.state_dir == tmp_path / "var"
    assert loaded.settings.sources.maildir[0].path == tmp_path / "var" / "Maildir"
    assert [o.name for o in loaded.settings.offenders] == ["Example Offender"]


def test_schema_catches_what_an_editor_should_flag() -> None:
    validator = jsonschema.Draft202012Validator(settings_json_schema())
    bad = {"offenders": [{"name": "Ex", "adresses": []}], "tenant": "Alice"}
    assert len(list(validator.iter_errors(bad))) == 2


def test_schema_file_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_schema(), (
        "config/guardmail.schema.json is out of date; regenerate it with "
        "`guardmail schema > config/guardmail.schema.json` "
        "(or `python -m guardmail.config.settings > config/guardmail.schema.json`)"
    )


def test_python_m_guardmail_settings_prints_the_schema() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "guardmail.config.settings"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == render_schema()
    assert json.loads(out)["title"] == "guardmail configuration"
