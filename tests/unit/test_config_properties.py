"""Property tests of the config loader (issue 23, "bad input"): whatever a main config, an
offender file or a tenant file holds (any YAML document, any text, any mutation of the example
config, including its commented-out sections switched on), loading it gives settings or a
ConfigError whose every issue names a file, a line, a column and a key path; never another
exception, never a hang (each load runs under a watchdog that interrupts it).

Example counts are bounded so that each property takes a few seconds; a long run sets
``GUARDMAIL_PROPERTY_EXAMPLES`` (``GUARDMAIL_PROPERTY_EXAMPLES=5000 pytest tests/unit/...``).
"""

from __future__ import annotations

import os
import signal
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from guardmail.config.settings import LoadedConfig, Settings, load_config
from guardmail.config.tenants import LoadedTenants, TenantConfig, load_tenants
from guardmail.errors import ConfigError

EXAMPLE = (Path(__file__).parents[2] / "config" / "guardmail.example.yaml").read_text()
WATCHDOG_SECONDS = 20  # far above any real load: only a hang reaches it
PROPERTY = settings(
    max_examples=int(os.environ.get("GUARDMAIL_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Hang(Exception):
    """A load that ran past the watchdog."""


@contextmanager
def watchdog(seconds: int = WATCHDOG_SECONDS) -> Iterator[None]:
    def expired(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"loading did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def assert_loads_or_placed_error(
    load: Callable[[], LoadedConfig | LoadedTenants], files: set[str]
) -> None:
    """``load`` returns, or raises ConfigError with every issue placed in one of ``files``."""
    try:
        with watchdog():
            load()
    except ConfigError as exc:
        assert exc.issues, "a ConfigError without issues names nothing"
        for issue in exc.issues:
            assert issue.file in files, (str(issue), files)
            assert issue.line >= 1 and issue.column >= 1, str(issue)
            assert issue.path.strip(), str(issue)
            assert issue.message.strip(), str(issue)
            assert "Traceback" not in issue.message


# Any YAML value PyYAML can write: scalars of every kind, nested lists and mappings.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(["", "*", "*@*", "re:.*", "re:(", "[", "@", "a@b", "..", "/", "~", "0x1"]),
)
keys = st.one_of(st.text(max_size=12), st.integers(-3, 3), st.none(), st.booleans())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)


def _shaped(annotation: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped like ``annotation`` (a pydantic model: its own keys), or anything at all:
    most of what reaches a validator should get past the YAML and the outer keys."""
    if depth > 4:
        return values
    origin = get_origin(annotation)
    args = [a for a in get_args(annotation) if a is not type(None)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        fields = annotation.model_fields
        shaped = {name: _shaped(f.annotation, depth + 1) for name, f in fields.items()}
        return st.one_of(
            st.fixed_dictionaries({}, optional=shaped),
            st.fixed_dictionaries({}, optional={**shaped, "bogus_key": values}),
            values,
        )
    if origin is list and args:
        return st.lists(_shaped(args[0], depth + 1), max_size=3) | values
    if args and origin is not None:  # a union, Literal or Annotated: try each branch
        return st.one_of(*(_shaped(a, depth + 1) for a in args), scalars)
    return scalars


documents = st.one_of(values, _shaped(Settings))
tenant_documents = st.one_of(values, _shaped(TenantConfig))


def dump(value: Any) -> str:
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False)


# What YAML means by punctuation: anchors, aliases (a list holding itself), merges, tags
# (Python objects among them, which only the unsafe loader builds), documents, out-of-range scalars.
YAML_TOKENS = [
    "&a ", "*a", "&a [*a]", "&a {k: *a}", "<<: *a", "<<: [*a, *a]", "!!binary ",
    "!!python/object/apply:os.system [true] ", "!!set ", "!!omap ", "!!timestamp ", "!!int ",
    "!!float ", "!!str ", "!custom ", "? ", "- ", ": ", "{", "}", "[", "]", "'", '"', "%YAML 1.1\n",
    "---\n", "...\n", "\t", "~", "2026-13-45", "1e400", "0o17", "0x", "9" * 5000, "\\x",
    "|\n", ">-\n",
]  # fmt: skip


def _uncomment(text: str, chosen: set[int]) -> str:
    """Switch on some commented-out lines of the example (``#   key: value`` -> ``  key``)."""
    lines = text.splitlines(keepends=True)
    for index in chosen:
        if index < len(lines) and lines[index].lstrip().startswith("# "):
            indent = len(lines[index]) - len(lines[index].lstrip())
            lines[index] = lines[index][:indent] + lines[index].lstrip()[2:]
    return "".join(lines)


def _mutate(text: str, ops: list[tuple[int, int, int, str]]) -> str:
    lines = text.splitlines(keepends=True)
    for kind, at, other, fill in ops:
        if not lines:
            lines = [fill]
            continue
        i, j = at % len(lines), other % len(lines)
        line = lines[i]
        if kind == 0:
            del lines[i]
        elif kind == 1:
            lines.insert(j, line)
        elif kind == 2:
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == 3:
            lines[i] = " " * (other % 5) + line.lstrip(" ")
        elif kind == 4:
            cut = other % (len(line) + 1)
            lines[i] = line[:cut] + fill + line[cut:]
        else:
            cut = other % (len(line) + 1)
            lines[i] = line[:cut] + line[cut + len(fill) :]
    return "".join(lines)


example_mutations = st.builds(
    _mutate,
    st.builds(_uncomment, st.just(EXAMPLE), st.sets(st.integers(0, 140), max_size=60)),
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.integers(0, 200),
            st.integers(0, 200),
            st.text(alphabet=string.printable + "\u00e9\u2028\ufeff", max_size=8)
            | st.sampled_from(YAML_TOKENS),
        ),
        max_size=6,
    ),
)


def test_every_commented_section_of_the_example_config_switched_on_is_read(
    tmp_path: Path,
) -> None:
    """The unmutated base of the mutations: the example with all its comments switched on gives
    placed issues (secrets files missing and so on), not a crash."""
    config = tmp_path / "guardmail.yaml"
    config.write_text(_uncomment(EXAMPLE, set(range(200))))
    assert_loads_or_placed_error(lambda: load_config(config, cwd=tmp_path), {"guardmail.yaml"})
    config.write_text(EXAMPLE)
    assert load_config(config, cwd=tmp_path).settings.offenders


@PROPERTY
@given(document=documents)
def test_any_yaml_document_loads_or_gives_placed_issues(tmp_path: Path, document: Any) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(dump(document), encoding="utf-8")
    assert_loads_or_placed_error(lambda: load_config(config, cwd=tmp_path), {"guardmail.yaml"})


@PROPERTY
@given(text=st.text(max_size=300))
def test_any_text_loads_or_gives_placed_issues(tmp_path: Path, text: str) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_bytes(text.encode("utf-8", "surrogatepass"))
    assert_loads_or_placed_error(lambda: load_config(config, cwd=tmp_path), {"guardmail.yaml"})


@PROPERTY
@given(text=example_mutations)
def test_any_mutation_of_the_example_config_loads_or_gives_placed_issues(
    tmp_path: Path, text: str
) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(text, encoding="utf-8")
    assert_loads_or_placed_error(lambda: load_config(config, cwd=tmp_path), {"guardmail.yaml"})


@PROPERTY
@given(offenders=st.one_of(values, _shaped(Settings.model_fields["offenders"].annotation)))
def test_any_offenders_file_loads_or_gives_placed_issues(tmp_path: Path, offenders: Any) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text("offenders_files: [ex.yaml]\n")
    (tmp_path / "ex.yaml").write_text(dump({"offenders": offenders}), encoding="utf-8")
    assert_loads_or_placed_error(
        lambda: load_config(config, cwd=tmp_path), {"guardmail.yaml", "ex.yaml"}
    )


@PROPERTY
@given(first=tenant_documents, second=tenant_documents)
def test_any_tenant_files_load_or_give_placed_issues(
    tmp_path: Path, first: Any, second: Any
) -> None:
    tenants = tmp_path / "tenants.d"
    tenants.mkdir(exist_ok=True)
    (tenants / "a.yaml").write_text(dump(first), encoding="utf-8")
    (tenants / "b.yaml").write_text(dump(second), encoding="utf-8")
    files = {str(tenants / "a.yaml"), str(tenants / "b.yaml")}
    assert_loads_or_placed_error(lambda: load_tenants(tenants, base=tmp_path), files)


def test_the_watchdog_interrupts_a_hang() -> None:
    """The hang detector itself can fail: a loop past its bound is interrupted."""
    with pytest.raises(Hang), watchdog(1):
        while True:
            pass


def test_a_key_a_terminal_would_act_on_is_named_quoted(tmp_path: Path) -> None:
    # Found by the tenant-files property: a key "\r" printed raw made a blank path (and a
    # terminal returns to the line's start there).
    tenants = tmp_path / "tenants.d"
    tenants.mkdir()
    (tenants / "b.yaml").write_text('"\\r": null\nname: b\nrecipients: [b@x.example]\n')
    with pytest.raises(ConfigError) as raised:
        load_tenants(tenants, base=tmp_path)
    [issue] = raised.value.issues
    assert issue.path == "'\\r'"
    assert "\r" not in str(issue)
