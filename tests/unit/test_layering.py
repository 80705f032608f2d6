"""Who may import whom (ARCHITECTURE.md), checked on every module of the package.

- ``channels/*`` never import ``daemon/``, ``control/``, ``commands/`` or another channel
  (``channels/tls.py`` and the package itself are shared by all channels);
- ``config/`` imports nothing from ``channels/``;
- only ``channels/`` import the protocol libraries imapclient, slixmpp and aiosmtpd;
- no module imports another module's private (underscore) names.
``core/`` has its own, stricter test (test_core_purity.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import guardmail

PACKAGE = Path(guardmail.__file__).parent
PROTOCOL_LIBRARIES = {"imapclient", "slixmpp", "aiosmtpd"}
SHARED_CHANNEL_MODULES = {"guardmail.channels", "guardmail.channels.tls"}
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def area(module: str) -> str:
    """The room a module lives in: ``channels.imap``, ``channels.maildir``, ``daemon``, ..."""
    parts = module.split(".")[1:]
    if parts[:1] == ["channels"] and len(parts) >= 2:
        return ".".join(parts[:2])
    return parts[0] if parts else ""


def violations(module: str, source: str) -> list[str]:
    mine = area(module)
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [(a.name, "") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [(node.module, a.name) for a in node.names]
        else:
            continue
        for target, name in targets:
            where = f"{module}:{node.lineno}"
            top = target.split(".")[0]
            if top in PROTOCOL_LIBRARIES and not mine.startswith("channels"):
                found.append(f"{where}: only channels/ may import {top}")
            if top != "guardmail":
                continue
            full = f"{target}.{name}" if name else target
            theirs = area(full if (PACKAGE.parent / full.replace(".", "/")).is_dir() else target)
            if mine.startswith("channels.") and target not in SHARED_CHANNEL_MODULES:
                if theirs in {"daemon", "control", "commands"}:
                    found.append(f"{where}: a channel imports {target}")
                elif theirs.startswith("channels.") and theirs != mine:
                    if full not in SHARED_CHANNEL_MODULES:
                        found.append(f"{where}: {mine} imports another channel's {full}")
            if mine == "config" and theirs.startswith("channels"):
                found.append(f"{where}: config imports {target}")
            if name.startswith("_") and not name.startswith("__"):
                found.append(f"{where}: imports the private name {name} of {target}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_keeps_to_its_layer(path: Path) -> None:
    assert violations(module_name(path), path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("guardmail.channels.imap.watch", "from guardmail.daemon.tenant import Tenant"),
        ("guardmail.channels.imap.watch", "import guardmail.control.server"),
        ("guardmail.channels.smtp.submit", "from guardmail.commands import load"),
        ("guardmail.channels.xmpp.send", "from guardmail.channels.smtp import submit"),
        ("guardmail.channels.maildir", "from guardmail.channels.imap.act import uid_set"),
        ("guardmail.config.sources", "from guardmail.channels.tls import client_context"),
        ("guardmail.warner", "import slixmpp"),
        ("guardmail.daemon.tenants", "from guardmail.config.settings import _why"),
        ("guardmail.pipeline", "from aiosmtpd.smtp import SMTP"),
    ],
)
def test_layering_check_refuses_a_crossing(module: str, source: str) -> None:
    assert violations(module, source)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("guardmail.channels.xmpp.send", "from guardmail.channels.xmpp import blocklist"),
        ("guardmail.channels.imap.conn", "from guardmail.channels.tls import client_context"),
        ("guardmail.channels.maildir", "from guardmail.pipeline import Pipeline"),
        ("guardmail.daemon.supervisor", "from guardmail.channels.imap.source import ImapSource"),
        ("guardmail.channels.xmpp.client", "import slixmpp"),
        ("guardmail.errors", "from __future__ import annotations"),
    ],
)
def test_layering_check_allows_what_the_design_allows(module: str, source: str) -> None:
    assert violations(module, source) == []
