"""``guardmail login`` end to end from the CLI against a local OAuth2 authorization server made
with authlib's server side: the device flow (RFC 8628) and the loopback flow (PKCE). The test
plays the person: it approves the code, or "opens" the printed URL with an HTTP client."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.servers.oauth_server import OAuthServer, start_oauth_server

pytestmark = pytest.mark.integration

CLIENT_ID = "guardmail-cli"


@pytest.fixture
def oauth() -> Iterator[OAuthServer]:
    server = start_oauth_server()
    server.add_client(CLIENT_ID)
    yield server
    server.stop()


def config(tmp: Path, oauth: OAuthServer) -> Path:
    path = tmp / "guardmail.yaml"
    path.write_text(
        f"""\
state_dir: {tmp}/var
sources:
  imap:
    - name: alice
      host: 127.0.0.1
      tls: none
      username: alice@example.org
      auth: oauth2
      oauth2:
        token_endpoint: {oauth.url}/token
        device_authorization_endpoint: {oauth.url}/device_authorization
        authorization_endpoint: {oauth.url}/authorize
        client_id: {CLIENT_ID}
        scope: mail offline_access
"""
    )
    return path


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def login(cfg: Path, *args: str, started: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "guardmail", "-c", str(cfg), "login", "--account", "alice", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started.append(proc)
    return proc


def read_until(proc: subprocess.Popen[str], marker: str) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    for _ in range(20):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} in {lines}")


def stored(tmp: Path) -> dict[str, object]:
    path = tmp / "var" / "oauth" / "imap-alice.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    data: dict[str, object] = json.loads(path.read_text())
    return data


def test_device_flow_prints_url_and_code_and_stores_the_tokens(
    oauth: OAuthServer, tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    proc = login(config(tmp_path, oauth), "--flow", "device", started=started)
    lines = read_until(proc, "enter the code")
    code = lines[-1].rsplit(" ", 1)[1]
    assert f"Open {oauth.url}/device " in lines[-1]
    requests.post(f"{oauth.url}/approve", data={"user_code": code, "user": "alice"}, timeout=5)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    tokens = stored(tmp_path)
    assert oauth.active_user(str(tokens["access_token"])) == "alice"
    assert str(tokens["access_token"]) not in out + err
    assert str(tokens["refresh_token"]) not in out + err


def test_browser_flow_with_pkce_stores_the_tokens(
    oauth: OAuthServer, tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    proc = login(config(tmp_path, oauth), "--flow", "browser", started=started)
    lines = read_until(proc, "waiting for the answer")
    url = lines[-2]
    assert url.startswith(f"{oauth.url}/authorize?") and "code_challenge_method=S256" in url
    # The browser: the person signs in as alice, the server redirects to guardmail's port.
    page = requests.get(url + "&user=alice", timeout=10)
    assert page.status_code == 200 and "sign-in is complete" in page.text
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    tokens = stored(tmp_path)
    assert oauth.active_user(str(tokens["access_token"])) == "alice"


def test_an_unknown_client_ends_with_a_clear_error(
    oauth: OAuthServer, tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    cfg = config(tmp_path, oauth)
    text = cfg.read_text().replace(f"client_id: {CLIENT_ID}", "client_id: unknown-app")
    cfg.write_text(text)
    proc = login(cfg, "--flow", "device", started=started)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "gave no device code" in err
    assert not (tmp_path / "var" / "oauth" / "imap-alice.json").exists()


def test_login_of_an_account_without_oauth2_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x\n")
    cfg = tmp_path / "guardmail.yaml"
    cfg.write_text(
        f"state_dir: {tmp_path}/var\nsources:\n  imap:\n    - name: alice\n      host: 127.0.0.1\n"
        f"      tls: none\n      username: a\n      password_file: {tmp_path}/pw\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "guardmail", "-c", str(cfg), "login", "--account", "alice"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "does not use auth: oauth2" in done.stderr
