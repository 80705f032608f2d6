"""The control socket: JSON lines over a 0600 Unix socket, peers checked by uid, reports going
through the same pipeline as everything else."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from guardmail.config.settings import LoadedConfig, load_config
from guardmail.control.client import NoDaemon, call
from guardmail.control.server import ControlServer, socket_path
from guardmail.core.item import mail_item
from guardmail.core.rules import Action, decide
from guardmail.daemon.tenant import Tenant, open_tenant
from guardmail.vault import journal

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONFIG = """\
state_dir: {root}/var
offenders:
  - name: Known
    addresses: [known@example.net]
    action: block
offenders_files: ["{root}/offenders.d/*.yaml"]
"""
MAIL = b"From: Stalker <stalker@evil.example>\r\nSubject: hi\r\n\r\n\x00\xff body\r\n"
T = TypeVar("T")
ITEM: dict[str, Any] = {"tenant": "default", "account": "a", "source_ref": "r", "received_at": NOW}


class Env:
    def __init__(self, root: Path, text: str = CONFIG) -> None:
        self.root = root
        self.path = root / "guardmail.yaml"
        self.path.write_text(text.format(root=root))
        self.config: LoadedConfig = load_config(self.path)
        self.state = self.config.settings.state_dir
        self.tenant: Tenant = open_tenant(self.config.settings)
        self.changes = 0

    def changed(self) -> None:
        """What the daemon does when a report adds a rule: load the config again and apply it."""
        self.changes += 1
        self.config = load_config(self.path)
        self.tenant.apply(self.config.settings)

    def server(self, **kw: Any) -> ControlServer:
        return ControlServer(
            state_dir=self.state,
            config=lambda: self.config,
            tenant=self.tenant,
            on_change=self.changed,
            clock=lambda: NOW,
            **kw,
        )

    def serve(self, body: Callable[[], Awaitable[T]], **kw: Any) -> T:
        """Run ``body`` while a server runs; the server is stopped after, its socket gone."""

        async def main() -> T:
            server = self.server(**kw)
            task = asyncio.create_task(server.run())
            await server.ready.wait()
            try:
                return await body()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        result = asyncio.run(main())
        assert not socket_path(self.state).exists()
        return result

    def call(self, request: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        return asyncio.to_thread(call, self.state, request)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.tenant.close()


def report(raw: bytes = MAIL, **kw: Any) -> dict[str, Any]:
    return {"op": "report", "raw": base64.b64encode(raw).decode(), "client": "test", **kw}


def test_report_over_the_socket_archives_and_records_the_peer(env: Env) -> None:
    async def body() -> list[dict[str, Any]]:
        return [await env.call(report()), await env.call(report(client="again"))]

    first, second = env.serve(body)
    assert first["ok"], first
    result = first["result"]
    assert (result["seq"], result["offender"], result["duplicate"]) == (
        1,
        "stalker@evil.example",
        False,
    )
    assert result["rule_added"].startswith("addresses: stalker@evil.example")
    assert second["ok"] and second["result"]["duplicate"] and second["result"]["seq"] == 1
    assert env.changes == 1  # only the report that added a rule asks for a reload
    (row,) = env.tenant.vault.rows(kind="archived")
    meta = journal.entry(row)["meta"]
    assert meta["via"] == "control socket"
    assert meta["local_uid"] == str(os.geteuid())
    assert meta["local_user"] == pwd.getpwuid(os.geteuid()).pw_name
    assert env.tenant.vault.blobs.get(row.sha256 or "") == MAIL


def test_report_blocks_the_next_message_with_a_config_that_leaves_out_offenders_files(
    tmp_path: Path,
) -> None:
    # As the example config: no offenders_files, so offenders.d/*.yaml beside it is loaded.
    example_like = (
        "state_dir: {root}/var\noffenders:\n  - name: Known\n    addresses: [k@x.example]\n"
    )
    env = Env(tmp_path, example_like)
    try:

        async def body() -> dict[str, Any]:
            return await env.call(report())

        answer = env.serve(body)
        assert answer["ok"], answer
        assert answer["result"]["file_loaded"] is True and answer["result"]["hint"] is None
        assert [o.name for o in env.config.settings.offenders] == ["Known", "stalker@evil.example"]
        later = b"From: stalker@evil.example\r\nSubject: again\r\n\r\nnew\r\n"
        verdict = decide(mail_item(later, **ITEM).identities, env.tenant.pipeline.rules, now=NOW)
        assert verdict.offender == "stalker@evil.example"
        assert verdict.action is not Action.PASS
    finally:
        env.tenant.close()


def test_offenders_and_status(env: Env) -> None:
    async def body() -> list[dict[str, Any]]:
        await env.call(report(new_offender="Ex"))
        return [await env.call({"op": "offenders"}), await env.call({"op": "status"})]

    offenders, status = env.serve(body)
    assert offenders == {
        "ok": True,
        "offenders": [
            {"name": "Known", "action": "block", "reported": False},
            {"name": "Ex", "action": "quarantine", "reported": True},
        ],
    }
    assert status["ok"] and status["status"]["tenant"] == "default"
    assert status["status"]["pid"] == os.getpid() and status["status"]["file_loaded"] is True


@pytest.mark.parametrize(
    ("line", "kind", "error"),
    [
        (b"not json\n", "bad_request", "not JSON"),
        (b"[1]\n", "bad_request", "must be a JSON object"),
        (b'{"op": "reload"}\n', "bad_request", "unknown op 'reload'"),
        (b'{"op": "report"}\n', "bad_request", "needs 'raw'"),
        (b'{"op": "report", "raw": "!!"}\n', "bad_request", "not base64"),
        (b'{"op": "report", "raw": "", "channel": "sms"}\n', "bad_request", "one of mail, xmpp"),
        (
            b'{"op": "report", "raw": "eA==", "offender": "a", "new_offender": "b"}\n',
            "bad_request",
            "not both",
        ),
        (b'{"op": "report", "raw": "eA=="}\n', "bad_report", "no From address"),
        (b'{"op": "report", "raw": "", "offender": 3}\n', "bad_request", "must be a string"),
        (b"x" * 5000 + b"\n", "too_large", "limited to 4096 bytes"),
    ],
)
def test_bad_requests_get_a_clear_error(env: Env, line: bytes, kind: str, error: str) -> None:
    async def body() -> dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(str(socket_path(env.state)))
        writer.write(line)
        await writer.drain()
        answer = json.loads(await reader.readline())
        writer.close()
        return dict(answer)

    answer = env.serve(body, max_line=4096)
    assert answer["ok"] is False and answer["kind"] == kind
    assert error in answer["error"]
    assert env.tenant.vault.rows() == []


def test_deeply_nested_json_is_a_bad_request_and_the_socket_keeps_serving(env: Env) -> None:
    async def body() -> list[dict[str, Any]]:
        reader, writer = await asyncio.open_unix_connection(str(socket_path(env.state)))
        writer.write(b'{"op": ' + b"[" * 100_000 + b"\n")
        writer.write(b'{"op": "offenders"}\n')
        await writer.drain()
        answers = [json.loads(await reader.readline()) for _ in range(2)]
        writer.close()
        answers.append(await env.call({"op": "status"}))  # and on a new connection
        return answers

    nested, offenders, status = env.serve(body)
    assert nested == {
        "ok": False,
        "kind": "bad_request",
        "error": "the request is nested too deeply",
    }
    assert offenders["ok"] is True and status["ok"] is True


def test_socket_is_0600_and_a_stale_one_is_replaced(env: Env) -> None:
    env.state.mkdir(parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(socket_path(env.state)))
    stale.close()  # the file stays, nobody listens: a daemon that died

    async def body() -> int:
        return stat.S_IMODE(os.stat(socket_path(env.state)).st_mode)

    assert env.serve(body) == 0o600
    with pytest.raises(NoDaemon):
        call(env.state, {"op": "status"})


FOREIGN_CLIENT = """\
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({"connect": exc.__class__.__name__}))
    sys.exit()
try:  # a refused peer may find the connection closed already; the answer is still there
    s.sendall(b'{"op": "report", "raw": "RnJvbTogYUBiLmV4YW1wbGUKCngK"}\\n')
except BrokenPipeError:
    pass
print(s.makefile("rb").readline().decode().strip())
"""


def as_nobody(path: Path) -> dict[str, Any]:
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python is not None
    done = subprocess.run(
        [python, "-c", FOREIGN_CLIENT, str(path)],
        user="nobody",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to 'nobody' needs root")


@pytest.fixture
def open_env() -> Iterator[Env]:
    """An Env whose directories anyone may traverse (pytest's own tmp root is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="gm-control-", dir="/tmp"))
    root.chmod(0o755)
    e = Env(root)
    try:
        yield e
    finally:
        e.tenant.close()
        shutil.rmtree(root)


@needs_root
@pytest.mark.parametrize(("state_mode", "socket_mode"), [(0o700, 0o600), (0o755, 0o600)])
def test_another_local_user_cannot_reach_the_socket(
    open_env: Env, state_mode: int, socket_mode: int
) -> None:
    # The 0700 state directory keeps them out; so would the 0600 socket on its own.
    env = open_env
    assert stat.S_IMODE(os.stat(env.state).st_mode) == 0o700  # as open_tenant made it
    env.state.chmod(state_mode)

    async def body() -> dict[str, Any]:
        return await asyncio.to_thread(as_nobody, socket_path(env.state))

    assert env.serve(body, mode=socket_mode) == {"connect": "PermissionError"}
    assert env.tenant.vault.rows() == []


@needs_root
def test_another_local_uid_is_refused_by_peer_credentials(open_env: Env) -> None:
    # Even if the permissions let them connect (a mistake), SO_PEERCRED refuses them.
    env = open_env
    env.state.chmod(0o755)

    async def body() -> dict[str, Any]:
        return await asyncio.to_thread(as_nobody, socket_path(env.state))

    nobody = pwd.getpwnam("nobody").pw_uid
    answer = env.serve(body, mode=0o666)
    assert answer == {
        "ok": False,
        "kind": "forbidden",
        "error": f"uid {nobody} may not use {socket_path(env.state)}",
    }
    assert env.tenant.vault.rows() == []
