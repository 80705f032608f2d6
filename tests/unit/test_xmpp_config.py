"""sources.xmpp in the config: secrets never inline, clear text only on loopback, unique names;
and the storage the watcher keeps its archive position and blocklist in."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from guardmail.config.settings import load_config
from guardmail.config.sources import SourcesConfig
from guardmail.config.xmpp_source import XmppSourceConfig
from guardmail.storage.base import JournalRow
from guardmail.storage.sqlite import SQLiteStorage


def make(**kw: object) -> XmppSourceConfig:
    base: dict[str, object] = {"name": "im", "jid": "victim@example.org", "password_file": "pw"}
    base.update(kw)
    return XmppSourceConfig.model_validate(base)


def test_defaults() -> None:
    cfg = make()
    assert (cfg.tls, cfg.effective_port, cfg.host, cfg.domain) == (
        "starttls",
        5222,
        None,
        "example.org",
    )
    assert (cfg.strangers, cfg.server_block, cfg.resource) == ("allow", False, "guardmail")
    assert make(tls="implicit").effective_port == 5223


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"password_file": None}, "exactly one of password_file or password_command"),
        ({"password_command": ["pass", "x"]}, "exactly one of password_file or password_command"),
        ({"tls": "none", "host": "xmpp.example.org"}, "allowed only for loopback"),
        ({"tls": "none"}, "allowed only for loopback"),  # no host: the JID's domain
        ({"jid": "victim@example.org/phone"}, "not a bare account JID"),
        ({"jid": "example.org"}, "not a bare account JID"),
        ({"strangers": "block"}, "strangers"),
        ({"port": 70000}, "port"),
        ({"passwd": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_refused(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make(**kw)


def test_tls_none_on_loopback_is_accepted() -> None:
    assert make(tls="none", host="127.0.0.1").tls == "none"
    assert make(tls="none", jid="victim@localhost").tls == "none"


def test_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="XMPP account names must be unique"):
        SourcesConfig.model_validate(
            {"xmpp": [make().model_dump(), make(jid="other@example.org").model_dump()]}
        )


def test_relative_files_are_resolved_against_the_start_directory(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(
        "state_dir: var\n"
        "sources:\n"
        "  xmpp:\n"
        "    - name: im\n"
        "      jid: victim@example.org\n"
        "      password_file: secrets/im\n"
        "      ca_file: ca.pem\n"
        "      server_block: true\n"
    )
    loaded = load_config(tmp_path / "g.yaml", cwd=tmp_path)
    (cfg,) = loaded.settings.sources.xmpp
    assert cfg.password_file == tmp_path / "secrets/im" and cfg.ca_file == tmp_path / "ca.pem"
    assert cfg.server_block


def test_cursors_and_archived_lookup_by_source_ref(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "db")
    with storage.transaction() as tx:
        assert tx.cursor("t", "xmpp:im", "mam") is None
        tx.set_cursor("t", "xmpp:im", "mam", '{"id": "A1"}')
        tx.set_cursor("t", "xmpp:im", "mam", '{"id": "A2"}')
        tx.set_cursor("u", "xmpp:im", "mam", "other tenant")
        for seq, kind in ((1, "archived"), (2, "action")):
            tx.journal_insert(
                JournalRow(
                    tenant="t",
                    seq=seq,
                    kind=kind,
                    body="{}",
                    prev_hash="0",
                    hash=str(seq),
                    source_ref="xmpp:im:A2",
                )
            )
    with storage.transaction() as tx:
        assert tx.cursor("t", "xmpp:im", "mam") == '{"id": "A2"}'
        found = tx.find_archived_ref("t", "xmpp:im:A2")
        assert found is not None and found.seq == 1
        assert tx.find_archived_ref("u", "xmpp:im:A2") is None
        assert tx.find_archived_ref("t", "xmpp:im:A3") is None
    storage.close()
