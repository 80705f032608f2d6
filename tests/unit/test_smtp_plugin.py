"""plugins/postfix/: the example config and tenant file load, and the filter's config rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from guardmail.config.settings import load_config
from guardmail.config.smtp_filter import SmtpFilterConfig
from guardmail.config.tenants import load_tenants
from guardmail.errors import ConfigError

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "postfix"


def test_the_example_tenant_file_loads(tmp_path: Path) -> None:
    shutil.copy(PLUGIN / "tenant.example.yaml", tmp_path / "alice.yaml")
    (alice,) = load_tenants(tmp_path).tenants
    assert alice.name == "alice"
    assert alice.recipients == ["alice@example.org", "@alice-family.example"]
    assert [o.action for o in alice.offenders] == ["quarantine", "block"]


def test_the_example_config_loads_with_relative_paths_resolved(tmp_path: Path) -> None:
    text = (PLUGIN / "guardmail.yaml").read_text()
    text = text.replace("/var/lib/guardmail", "var").replace("/etc/guardmail/tenants.d", "t.d")
    (tmp_path / "guardmail.yaml").write_text(text)
    loaded = load_config("guardmail.yaml", cwd=tmp_path)
    cfg = loaded.settings.sources.smtp_filter
    assert cfg is not None
    assert cfg.tenants_dir == tmp_path / "t.d"
    assert (cfg.listen_address, cfg.next_hop_address) == (
        ("127.0.0.1", 10025),
        ("127.0.0.1", 10026),
    )
    assert cfg.mode == "after_queue"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"listen": "0.0.0.0:10025"}, "is not a loopback address"),
        ({"listen": "10025"}, "is not HOST:PORT"),
        ({"next_hop": "127.0.0.1:99999"}, "is not HOST:PORT"),
        ({"mode": "milter_x"}, "'after_queue', 'before_queue' or 'milter'"),
        ({"listen": "unix:/run/g.sock"}, "only mode: milter serves"),
        ({"listen": "unix:run/g.sock", "mode": "milter"}, "unix:/ABSOLUTE/PATH"),
        ({"listen": "0.0.0.0:10025", "mode": "milter"}, "is not a loopback address"),
        ({"socket_group": "postfix"}, "applies only to a unix:/PATH"),
        ({"recipient_delimiter": "@"}, "may not hold spaces or '@'"),
    ],
)
def test_filter_settings_that_cannot_work_are_refused(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SmtpFilterConfig.model_validate(fields)


def test_ipv6_loopback_is_accepted() -> None:
    cfg = SmtpFilterConfig(listen="[::1]:10025")
    assert cfg.listen_address == ("::1", 10025)


def test_a_milter_on_a_unix_socket_or_loopback_tcp_is_accepted() -> None:
    unix = SmtpFilterConfig(listen="unix:/run/guardmail/milter.sock", mode="milter")
    assert unix.listen_unix == Path("/run/guardmail/milter.sock")
    tcp = SmtpFilterConfig(listen="127.0.0.1:8891", mode="milter")
    assert (tcp.listen_unix, tcp.listen_address) == (None, ("127.0.0.1", 8891))


def test_a_wrong_milter_setting_is_named_by_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "guardmail.yaml").write_text(
        "state_dir: var\nsources:\n  smtp_filter:\n    mode: milter\n"
        "    listen: unix:relative.sock\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config("guardmail.yaml", cwd=tmp_path)
    (issue,) = raised.value.issues
    text = str(issue)
    assert "guardmail.yaml" in text and ":5" in text and "sources.smtp_filter.listen" in text
    assert "unix:/ABSOLUTE/PATH" in text
