"""core/ does no I/O: its modules may not import I/O, clock or protocol libraries."""

import ast
from pathlib import Path

import pytest

import guardmail.core

FORBIDDEN = {
    "asyncio",
    "socket",
    "ssl",
    "os",
    "pathlib",
    "time",
    "aiosmtpd",
    "slixmpp",
    "imapclient",
    "sqlite3",
    "psycopg",
    "subprocess",
    "guardmail.config.settings",
}
CORE = Path(guardmail.core.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_no_io_library(module: Path) -> None:
    bad = {
        name for name in _imports(module) if name in FORBIDDEN or name.split(".")[0] in FORBIDDEN
    }
    assert not bad, f"{module.name} imports {sorted(bad)}"


def test_purity_check_sees_the_core_modules() -> None:
    assert {"item.py", "rules.py", "patterns.py"} <= {p.name for p in CORE.glob("*.py")}
