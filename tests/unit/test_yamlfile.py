"""Whatever a config, offender or tenant file holds, reading it gives issues placed in the file,
never another exception (a RecursionError once killed the daemon on reload)."""

from pathlib import Path

import pytest

from guardmail.cli import main
from guardmail.config.settings import load_config
from guardmail.config.tenants import load_tenants
from guardmail.config.yamlfile import MAX_BYTES, MAX_DEPTH, parse_source
from guardmail.errors import ConfigError

DEEP = "[" * 500 + "]" * 500
TENANT = "name: alice\nrecipients: [alice@example.org]\n"


def issues_of(call: object, *args: object, **kwargs: object) -> list[str]:
    assert callable(call)
    with pytest.raises(ConfigError) as caught:
        call(*args, **kwargs)
    return [str(issue) for issue in caught.value.issues]


def test_deeply_nested_main_config_is_an_issue_where_it_goes_too_deep(tmp_path: Path) -> None:
    (tmp_path / "guardmail.yaml").write_text(f"offenders: {DEEP}\n")
    [issue] = issues_of(load_config, "guardmail.yaml", cwd=tmp_path)
    assert issue.startswith(f"guardmail.yaml:1:{len('offenders: ') + MAX_DEPTH}: (yaml): ")
    assert f"nest deeper than {MAX_DEPTH} levels" in issue


def test_deeply_nested_offenders_file_is_an_issue_in_that_file(tmp_path: Path) -> None:
    (tmp_path / "guardmail.yaml").write_text("offenders_files: [ex.yaml]\n")
    (tmp_path / "ex.yaml").write_text(f"offenders:\n  - name: Ex\n    patterns: {DEEP}\n")
    [issue] = issues_of(load_config, "guardmail.yaml", cwd=tmp_path)
    assert issue.startswith("ex.yaml:3:") and "nest deeper than" in issue


def test_deeply_nested_tenant_file_is_an_issue_in_that_file(tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.d"
    tenants.mkdir()
    (tenants / "alice.yaml").write_text(TENANT + f"offenders: {DEEP}\n")
    [issue] = issues_of(load_tenants, tenants)
    assert issue.startswith(f"{tenants / 'alice.yaml'}:3:") and "nest deeper than" in issue


def test_deep_block_mappings_are_refused_too() -> None:
    text = "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 200))
    [issue] = issues_of(parse_source, text, "deep.yaml")
    assert issue.startswith(f"deep.yaml:{MAX_DEPTH + 1}:") and "nest deeper than" in issue


def test_nesting_up_to_the_limit_is_read() -> None:
    depth = MAX_DEPTH - 1  # under the top-level mapping
    source = parse_source("x: " + "[" * depth + "]" * depth + "\n", "ok.yaml")
    assert isinstance(source.data, dict)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("state_dir: 1" + "1" * 5000 + "\n", "1:12: (yaml): cannot read this int value"),
        ("state_dir: 2026-13-45\n", "1:12: (yaml): cannot read this timestamp value"),
    ],
)
def test_scalar_pyyaml_cannot_build_is_an_issue_at_that_scalar(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "guardmail.yaml").write_text(text)
    [issue] = issues_of(load_config, "guardmail.yaml", cwd=tmp_path)
    assert issue.startswith(f"guardmail.yaml:{message}")


def test_file_over_the_size_limit_is_refused_unparsed(tmp_path: Path) -> None:
    (tmp_path / "guardmail.yaml").write_text("offenders_files: [big.yaml]\n")
    (tmp_path / "big.yaml").write_bytes(b"#" * (MAX_BYTES + 1))
    [issue] = issues_of(load_config, "guardmail.yaml", cwd=tmp_path)
    assert issue.startswith("big.yaml:1:1: (file): the file is larger than 8 MiB")


def test_check_config_reads_the_tenants_directory_and_exits_2_on_a_bad_tenant_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tenants = tmp_path / "tenants.d"
    tenants.mkdir()
    (tenants / "alice.yaml").write_text(TENANT)
    (tenants / "bob.yaml").write_text(
        "name: bob\nrecipients: [bob@example.org]\n"
        "offenders:\n  - name: Ex\n    patterns: ['re:(st)alker\\1']\n"
    )
    config = tmp_path / "guardmail.yaml"
    config.write_text(
        f"state_dir: {tmp_path}/var\n"
        f"sources:\n  smtp_filter:\n    tenants_dir: {tenants}\n"
        "offenders:\n  - name: Ex\n    addresses: [ex@example.net]\n"
    )
    assert main(["-c", str(config), "check-config"]) == 2
    err = capsys.readouterr().err
    assert f"{tenants / 'bob.yaml'}:5:16: offenders.0.patterns.0: regex" in err

    (tenants / "bob.yaml").write_text(
        f"name: bob\nrecipients: [bob@example.org]\noffenders: {DEEP}\n"
    )
    assert main(["-c", str(config), "check-config"]) == 2
    assert f"{tenants / 'bob.yaml'}:3:" in capsys.readouterr().err

    (tenants / "bob.yaml").unlink()
    assert main(["-c", str(config), "check-config"]) == 0
    assert f"1 tenants in {tenants}" in capsys.readouterr().out


def test_run_with_a_deep_config_exits_2_with_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(f"offenders: {DEEP}\n")
    assert main(["-c", str(config), "run"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{config}:1:") and "nest deeper than" in line


SAME_EITHER_WAY = [
    Path(__file__).parents[2] / "config" / "guardmail.example.yaml",
    TENANT + "offenders:\n  - {name: Ex, addresses: [ex@bad.example]}\n",
    "a: &x [1, 2.5, true, null, 2026-12-03]\nb: *x\nc: {<<: {d: 1}, e: 'q'}\n"
    "d: |\n  two\n  lines\n",
    "offenders:\n  - name: Élodie Ünal\n    addresses: ['é@exämple.org']\n"
    '    note: "\\t\\u00e9"\n',
    "a: 1\na: 2\n",  # a repeated key: an issue, and the file still read
    "x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n",
]


def nodes(node: object) -> list[tuple[object, ...]]:
    """Every node of a tree, in order: its kind, tag, value and where it starts and ends."""
    import yaml

    assert isinstance(node, yaml.Node)
    start, end = node.start_mark, node.end_mark
    here: tuple[object, ...] = (type(node).__name__, node.tag, start.line, start.column)
    here += (end.line, end.column)
    if isinstance(node, yaml.ScalarNode):
        return [(*here, node.value)]
    found = [here]
    for child in node.value:
        for part in child if isinstance(child, tuple) else (child,):
            found += nodes(part)
    return found


@pytest.mark.parametrize("text", SAME_EITHER_WAY, ids=range(len(SAME_EITHER_WAY)))
def test_the_fast_reader_gives_what_the_reference_reader_gives(
    text: str | Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libyaml's parser (the fast path, for 1,000 tenant files at start) must not change what
    a file means or where its issues are placed."""
    import guardmail.config.yamlfile as yamlfile

    if isinstance(text, Path):
        text = text.read_text()
    assert yamlfile._fast_source(text, "f.yaml") is not None  # read by libyaml, no fallback
    fast = parse_source(text, "f.yaml")
    monkeypatch.setattr(yamlfile, "_fast_source", lambda text, file: None)
    slow = parse_source(text, "f.yaml")
    assert fast.data == slow.data and fast.issues == slow.issues
    assert nodes(fast.root) == nodes(slow.root)


@pytest.mark.parametrize(
    "text",
    ["a: [1, 2\n", "a:\n\t- b\n", "a: !!python/object:os.system x\n", "a: \x07\n", "x: " + DEEP],
)
def test_a_file_the_fast_reader_refuses_gets_the_reference_readers_issue(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import guardmail.config.yamlfile as yamlfile

    fast = issues_of(parse_source, text, "f.yaml")
    monkeypatch.setattr(yamlfile, "_fast_source", lambda text, file: None)
    assert fast == issues_of(parse_source, text, "f.yaml")
