"""``guardmail install-client thunderbird`` and the native host it installs, started exactly as
Thunderbird starts it: the manifest's path, with the manifest and the extension id as arguments,
no shell, framed JSON on stdin and stdout."""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from guardmail.control.nativehost import EXTENSION_ID
from tests.integration.guardmail_proc import guardmail

pytestmark = pytest.mark.integration

MAIL = b"From: Stalker <stalker@evil.example>\r\nSubject: hi\r\n\r\n\xe9\r\n"


def frame(value: object) -> bytes:
    data = json.dumps(value).encode()
    return struct.pack("=I", len(data)) + data


def unframe(data: bytes) -> list[dict[str, object]]:
    out = []
    while data:
        (size,) = struct.unpack("=I", data[:4])
        out.append(json.loads(data[4 : 4 + size]))
        data = data[4 + size :]
    return out


def test_install_client_writes_a_host_thunderbird_can_start(tmp_path: Path) -> None:
    config = tmp_path / "guardmail.yaml"
    config.write_text(f"state_dir: {tmp_path}/var\n")
    home = tmp_path / "home"
    done = guardmail(config, "install-client", "thunderbird", "--home", str(home))
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    manifest_path = home / ".mozilla" / "native-messaging-hosts" / "guardmail.json"
    assert f"native messaging host: {manifest_path}" in out
    assert "NOTE" not in out  # offenders_files left out: offenders.d/*.yaml beside it loads
    assert (tmp_path / "offenders.d").is_dir()
    manifest = json.loads(manifest_path.read_text())
    assert manifest["name"] == "guardmail" and manifest["type"] == "stdio"
    assert manifest["allowed_extensions"] == [EXTENSION_ID]
    host = Path(manifest["path"])
    assert host.is_absolute() and os.access(host, os.X_OK)

    request = {"op": "report", "raw": base64.b64encode(MAIL).decode(), "client": "thunderbird"}
    run = subprocess.run(
        [str(host), str(manifest_path), EXTENSION_ID],
        input=frame({"op": "ping"}) + frame(request),
        capture_output=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
    )
    assert run.returncode == 0, run.stderr
    ping, answer = unframe(run.stdout)
    assert ping["ok"] is True
    assert answer["ok"] is True, answer
    result = answer["result"]
    assert isinstance(result, dict) and result["seq"] == 1
    assert guardmail(config, "evidence", "show", "1").stdout == MAIL
