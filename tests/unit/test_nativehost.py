"""guardmail native-host: Mozilla's stdio framing, and requests answered in-process when no
daemon runs (through the same report path as the control socket)."""

from __future__ import annotations

import base64
import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from guardmail.config.settings import load_config
from guardmail.control.nativehost import (
    MAX_REPLY,
    FramingError,
    Host,
    read_message,
    serve,
    write_message,
)
from guardmail.daemon.tenant import open_tenant
from guardmail.vault import journal

MAIL = b"From: Stalker <stalker@evil.example>\r\nSubject: hi\r\n\r\nbody\r\n"


def frame(value: bytes) -> bytes:
    return struct.pack("=I", len(value)) + value


def frames(stream: bytes) -> list[Any]:
    out = []
    source = io.BytesIO(stream)
    while (message := read_message(source)) is not None:
        out.append(message)
    return out


def test_messages_round_trip_in_native_byte_order() -> None:
    out = io.BytesIO()
    write_message(out, {"ok": True, "text": "é"})
    data = out.getvalue()
    assert data[:4] == struct.pack("=I", len(data) - 4)
    assert frames(data) == [{"ok": True, "text": "é"}]


def test_an_answer_over_the_1_mib_limit_becomes_an_error() -> None:
    out = io.BytesIO()
    write_message(out, {"ok": True, "big": "x" * MAX_REPLY})
    assert frames(out.getvalue())[0]["kind"] == "too_large"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x05\x00", "inside a length prefix"),
        (struct.pack("=I", 10) + b"{}", "ended after 2 of a 10-byte message"),
        (frame(b"{not json"), "not UTF-8 JSON"),
        (frame(b"[" * 100_000), "nested too deeply"),
        (struct.pack("=I", 0xFFFFFFFF), "over the"),
    ],
)
def test_broken_framing_is_a_clear_error(data: bytes, error: str) -> None:
    with pytest.raises(FramingError, match=error):
        read_message(io.BytesIO(data))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "guardmail.yaml"
    path.write_text(f'state_dir: {tmp_path}/var\noffenders_files: ["{tmp_path}/offenders.d/*"]\n')
    return path


def test_host_reports_in_process_when_no_daemon_runs(config: Path) -> None:
    report = {
        "op": "report",
        "raw": base64.b64encode(MAIL).decode(),
        "client": "thunderbird",
        "note": "Thunderbird's local-store status lines removed: 51 bytes",
    }
    stdin = b"".join(
        frame(v)
        for v in (
            b'{"op": "ping"}',
            json.dumps(report).encode(),
            b'{"op": "offenders"}',
            b'{"op": "nope"}',
            b"[]",
        )
    )
    out = io.BytesIO()
    loaded = load_config(config)
    serve(io.BytesIO(stdin), out, Host(loaded))
    ping, reported, offenders, unknown, not_object = frames(out.getvalue())
    assert ping["ok"] and "version" in ping
    assert reported["ok"] and reported["result"]["offender"] == "stalker@evil.example"
    assert offenders == {
        "ok": True,
        "offenders": [{"name": "stalker@evil.example", "action": "quarantine", "reported": True}],
    }
    assert unknown["kind"] == "bad_request" and "unknown op 'nope'" in unknown["error"]
    assert not_object["kind"] == "bad_request"
    tenant = open_tenant(loaded.settings)
    try:
        (row,) = tenant.vault.rows(kind="archived")
        meta = journal.entry(row)["meta"]
        assert tenant.vault.blobs.get(row.sha256 or "") == MAIL
    finally:
        tenant.close()
    assert meta["client"] == "thunderbird" and meta["via"] == "native host (no daemon)"
    assert meta["client_note"] == "Thunderbird's local-store status lines removed: 51 bytes"


def test_host_answers_a_framing_error_once_and_stops(config: Path) -> None:
    out = io.BytesIO()
    serve(io.BytesIO(frame(b"{bad") + frame(b'{"op": "ping"}')), out, Host(load_config(config)))
    (answer,) = frames(out.getvalue())
    assert answer["ok"] is False and "not UTF-8 JSON" in answer["error"]


def test_add_to_existing_offender_makes_the_alias_the_same_person_for_the_warning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "guardmail.yaml"
    path.write_text(
        f"state_dir: {tmp_path}/var\n"
        f'offenders_files: ["{tmp_path}/offenders.d/*"]\n'
        "offenders:\n  - name: Stalker\n    addresses: [stalker@known.example]\n"
    )
    report = {
        "op": "report",
        "raw": base64.b64encode(MAIL).decode(),
        "client": "thunderbird",
        "offender": "Stalker",  # the add-on's "Add to Stalker" menu item
    }
    out = io.BytesIO()
    serve(io.BytesIO(frame(json.dumps(report).encode())), out, Host(load_config(path)))
    (reported,) = frames(out.getvalue())
    assert reported["ok"], reported
    assert reported["result"]["offender"] == "Stalker (reported)"
    tenant = open_tenant(load_config(path).settings)  # reloaded: the alias entry is in it
    try:
        ids = tenant.warner.ids()
    finally:
        tenant.close()
    assert ids["stalker (reported)"] == ids["stalker"]
    # The entry carries the id itself, so renaming either entry later keeps them one person.
    written = (tmp_path / "offenders.d" / "reported.yaml").read_text()
    assert f"id: {ids['stalker']}" in written
