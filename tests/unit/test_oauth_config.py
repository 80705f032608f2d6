"""auth: oauth2 and provider presets in the config (issue 30): what a preset fills, what the
operator's own keys override, and the clear errors for settings that do not fit together."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardmail.config.settings import load_config
from guardmail.errors import ConfigError


def load(tmp: Path, imap: str, extra: str = "") -> object:
    (tmp / "pw").write_text("x\n")
    (tmp / "guardmail.yaml").write_text(
        f"state_dir: var\nsources:\n  imap:\n    - name: me\n{imap}{extra}"
    )
    return load_config(tmp / "guardmail.yaml", cwd=tmp).settings


def errors(tmp: Path, imap: str, extra: str = "") -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp, imap, extra)
    return str(caught.value)


OUTLOOK = (
    "      provider: outlook\n      username: me@outlook.com\n      oauth2: {client_id: app}\n"
)


def test_outlook_preset_fills_server_oauth2_endpoints_and_the_token_file(tmp_path: Path) -> None:
    settings = load(tmp_path, OUTLOOK)
    (imap,) = settings.sources.imap  # type: ignore[attr-defined]
    assert (imap.host, imap.effective_port, imap.tls, imap.auth) == (
        "outlook.office365.com",
        993,
        "implicit",
        "oauth2",
    )
    assert imap.oauth2.token_endpoint == (
        "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    )
    assert imap.oauth2.scope == "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
    assert imap.oauth2.mechanism == "xoauth2"
    assert imap.oauth2.token_file == tmp_path / "var" / "oauth" / "imap-me.json"


def test_what_the_operator_writes_wins_over_the_preset(tmp_path: Path) -> None:
    text = OUTLOOK.replace("{client_id: app}", "{client_id: app, mechanism: oauthbearer}")
    settings = load(tmp_path, text + "      host: imap.example.org\n")
    (imap,) = settings.sources.imap  # type: ignore[attr-defined]
    assert imap.host == "imap.example.org" and imap.oauth2.mechanism == "oauthbearer"
    assert imap.oauth2.device_authorization_endpoint.endswith("/oauth2/v2.0/devicecode")


def test_outlook_with_a_password_is_refused_with_the_reason(tmp_path: Path) -> None:
    text = "      provider: outlook\n      username: me\n      auth: password\n"
    found = errors(tmp_path, text + "      password_file: pw\n")
    assert "accept no passwords" in found and "sources.imap.0" in found


def test_gmail_takes_an_app_password_or_oauth2(tmp_path: Path) -> None:
    settings = load(
        tmp_path, "      provider: gmail\n      username: me\n      password_file: pw\n"
    )
    (imap,) = settings.sources.imap  # type: ignore[attr-defined]
    assert (imap.host, imap.auth, imap.oauth2) == ("imap.gmail.com", "password", None)
    text = "      provider: gmail\n      username: me\n      auth: oauth2\n"
    settings = load(tmp_path, text + "      oauth2: {client_id: x.apps.googleusercontent.com}\n")
    (imap,) = settings.sources.imap  # type: ignore[attr-defined]
    assert imap.oauth2.token_endpoint == "https://oauth2.googleapis.com/token"
    assert imap.oauth2.scope == "https://mail.google.com/"
    # Google's device flow refuses Gmail's scope: only the browser flow is preset.
    assert imap.oauth2.device_authorization_endpoint is None
    assert imap.oauth2.authorization_endpoint == "https://accounts.google.com/o/oauth2/v2/auth"


@pytest.mark.parametrize(
    ("imap", "message"),
    [
        ("      host: h\n      username: u\n      auth: oauth2\n", "no oauth2: section"),
        (
            "      provider: icloud\n      username: u\n      auth: oauth2\n",
            "no oauth2: section",
        ),
        (
            "      host: h\n      username: u\n      password_file: pw\n"
            "      oauth2: {token_endpoint: https://t, client_id: c, scope: s,"
            " device_authorization_endpoint: https://d}\n",
            "write auth: oauth2",
        ),
        (
            "      host: h\n      username: u\n      auth: oauth2\n"
            "      oauth2: {token_endpoint: http://login.example/t, client_id: c, scope: s,"
            " device_authorization_endpoint: https://d}\n",
            "not an https:// URL",
        ),
        (
            "      host: h\n      username: u\n      auth: oauth2\n"
            "      oauth2: {token_endpoint: https://t, client_id: c, scope: s}\n",
            "device_authorization_endpoint or authorization_endpoint",
        ),
        (OUTLOOK + "      password_file: pw\n", "leave password_file and password_command out"),
    ],
)
def test_auth_settings_that_do_not_fit_are_clear_errors(
    tmp_path: Path, imap: str, message: str
) -> None:
    assert message in errors(tmp_path, imap)


def test_token_file_names_hold_any_account_name_as_one_file(tmp_path: Path) -> None:
    settings = load(tmp_path, OUTLOOK.replace("- name: me", ""), "")
    (imap,) = settings.sources.imap  # type: ignore[attr-defined]
    assert imap.oauth2.token_file.parent == tmp_path / "var" / "oauth"
    (tmp_path / "guardmail.yaml").write_text(
        "state_dir: var\nsources:\n  imap:\n    - name: ../a/b c\n" + OUTLOOK
    )
    (imap,) = load_config(tmp_path / "guardmail.yaml", cwd=tmp_path).settings.sources.imap
    assert imap.oauth2 is not None and imap.oauth2.token_file is not None
    assert imap.oauth2.token_file.parent == tmp_path / "var" / "oauth"
    assert imap.oauth2.token_file.name == "imap-..%2Fa%2Fb%20c.json"


def test_the_warning_smtp_takes_a_preset_and_its_own_token_file(tmp_path: Path) -> None:
    (tmp_path / "w.j2").write_text("x")
    extra = (
        "warning:\n  from: me@outlook.com\n  template_file: w.j2\n"
        "  smtp: {provider: outlook, username: me@outlook.com, oauth2: {client_id: app}}\n"
    )
    settings = load(tmp_path, OUTLOOK, extra)
    smtp = settings.warning.smtp  # type: ignore[attr-defined]
    assert (smtp.host, smtp.effective_port, smtp.tls) == ("smtp.office365.com", 587, "starttls")
    assert smtp.oauth2.scope == "https://outlook.office.com/SMTP.Send offline_access"
    assert smtp.oauth2.token_file == tmp_path / "var" / "oauth" / "smtp-warning.json"


def test_a_quarantine_folder_may_be_a_special_use_role_but_not_an_unknown_one(
    tmp_path: Path,
) -> None:
    base = "      host: h\n      username: u\n      password_file: pw\n"
    settings = load(tmp_path, base + "      quarantine_folder: '\\Junk'\n")
    assert settings.sources.imap[0].quarantine_folder == "\\Junk"  # type: ignore[attr-defined]
    assert "not a SPECIAL-USE role" in errors(
        tmp_path, base + "      quarantine_folder: '\\Spam'\n"
    )
