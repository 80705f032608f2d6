"""core/ does no I/O: its modules import only pure standard-library modules and core itself.

An allowlist, not a blocklist: a new import in core/ has to be added here on purpose, so
``from guardmail.config import settings`` or ``import shutil`` inside core fails at once.
"""

import ast
from pathlib import Path

import pytest

import guardmail.core

# Modules that do no I/O, read no clock and start nothing. jinja2 renders the warning from a
# string in a sandbox (no loader); idna is the IDNA 2008 codec; numpy computes on arrays in
# core/alias_shingles.py (its file functions, load/save/fromfile, are not for core: review says so).
PURE = {
    "__future__",
    "bisect",
    "collections",
    "dataclasses",
    "datetime",
    "email",
    "enum",
    "fnmatch",
    "functools",
    "hashlib",
    "idna",
    "itertools",
    "jinja2",
    "re",
    "re2",
    "string",
    "typing",
    "unicodedata",
    "ipaddress",
    "math",
    "numpy",
    "xml",
    "zlib",
}
CORE = Path(guardmail.core.__file__).parent


def imports(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def impure(names: set[str]) -> set[str]:
    return {
        name
        for name in names
        if not (name.split(".")[0] in PURE or name.startswith("guardmail.core."))
        or name in {"jinja2.loaders", "email.mime"}
    }


@pytest.mark.parametrize("module", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_only_pure_modules(module: Path) -> None:
    bad = impure(imports(module.read_text(encoding="utf-8")))
    assert not bad, f"{module.name} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "source",
    [
        "from guardmail.config import settings",
        "import guardmail.config.settings",
        "import os",
        "from pathlib import Path",
        "import shutil",
        "from . import item",
        "import asyncio",
    ],
)
def test_purity_check_refuses_what_core_may_not_import(source: str) -> None:
    assert impure(imports(source))


def test_purity_check_sees_the_core_modules() -> None:
    assert {"item.py", "rules.py", "patterns.py"} <= {p.name for p in CORE.glob("*.py")}
