"""Secrets never reach a log: a password command is named by its program only, an IMAP server
that echoes the login in its refusal is not quoted, and a non-ASCII password neither crashes the
watcher nor shows its characters (a small IMAP server on loopback plays the server)."""

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from guardmail import logs
from guardmail.channels.imap.watch import FolderWatcher
from guardmail.config.imap_source import ImapSourceConfig
from guardmail.config.secrets import read_secret
from guardmail.core.rules import RuleSet
from guardmail.errors import SecretError
from guardmail.pipeline import Pipeline
from guardmail.storage.sqlite import SQLiteStorage
from guardmail.vault.store import Vault

TOKEN = "tok-8f3a1c"  # what a password command's argument may carry


def test_a_password_command_that_times_out_is_named_by_its_program_only() -> None:
    command = ["/bin/sh", "-c", f"exec sleep 30 # --token={TOKEN}"]
    with pytest.raises(SecretError) as caught:
        read_secret(command=command, timeout=0.2)
    text = str(caught.value)
    assert "password command 'sh' did not finish within 0.2s" in text
    assert TOKEN not in text and "/bin/" not in text and "sleep" not in text


def test_a_password_command_that_cannot_run_is_named_by_its_program_only(tmp_path: Path) -> None:
    command = [str(tmp_path / "no-such-helper"), f"--token={TOKEN}"]
    with pytest.raises(SecretError) as caught:
        read_secret(command=command)
    text = str(caught.value)
    assert text == "password command 'no-such-helper' could not be run: No such file or directory"
    with pytest.raises(SecretError) as caught:
        read_secret(command=["/usr/bin/pass", f"--token={TOKEN}\0"])
    assert str(caught.value) == "password command 'pass' could not be run: ValueError"


# --- a fake IMAP server ------------------------------------------------------------------------


async def serve_imap(
    capabilities: str,
    refuse: Callable[[bytes], bytes],
    seen: list[bytes],
) -> asyncio.Server:
    """Answers CAPABILITY and LOGOUT; refuses LOGIN and AUTHENTICATE with ``refuse(line)``."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"* OK [CAPABILITY {capabilities}] fake ready\r\n".encode())
        while line := await reader.readline():
            seen.append(line)
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            verb = rest.split(b" ", 1)[0].upper()
            if verb == b"CAPABILITY":
                writer.write(f"* CAPABILITY {capabilities}\r\n".encode() + tag + b" OK done\r\n")
            elif verb == b"AUTHENTICATE":
                writer.write(b"+ \r\n")
                await writer.drain()
                response = await reader.readline()
                seen.append(response)
                writer.write(tag + b" NO " + refuse(response.rstrip(b"\r\n")) + b"\r\n")
            elif verb == b"LOGIN":
                writer.write(tag + b" NO " + refuse(line.rstrip(b"\r\n")) + b"\r\n")
            elif verb == b"LOGOUT":
                writer.write(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                await writer.drain()
                break
            else:
                writer.write(tag + b" BAD unknown\r\n")
            await writer.drain()
        writer.close()

    return await asyncio.start_server(session, "127.0.0.1", 0)


def watch_once(tmp_path: Path, server: asyncio.Server, password: str) -> list[dict[str, Any]]:
    """Run a folder watcher against ``server`` until its first failure; the events it logged."""
    (tmp_path / "pw").write_text(password + "\n", encoding="utf-8")
    port = server.sockets[0].getsockname()[1]
    cfg = ImapSourceConfig(
        name="acct",
        host="127.0.0.1",
        port=port,
        tls="none",
        username="alice",
        password_file=tmp_path / "pw",
        timeout_seconds=10,
    )
    storage = SQLiteStorage(tmp_path / "db.sqlite3")
    pipeline = Pipeline(vault=Vault(tmp_path / "vault", storage, "t"), rules=RuleSet([]))
    watcher = FolderWatcher(cfg=cfg, folder="INBOX", tenant="t", pipeline=pipeline, storage=storage)
    events: list[dict[str, Any]] = []

    def listen(name: str, level: int, fields: dict[str, Any]) -> None:
        events.append({"event": name, **fields})
        if name.startswith("imap.") and "retry_in" in fields:
            watcher.stop()

    logs.add_listener(listen)
    try:
        watcher.run()  # returns once stopped; raises if anything escapes the connect step
    finally:
        logs.remove_listener(listen)
        storage.close()
    return events


def run_against(
    tmp_path: Path, capabilities: str, refuse: Callable[[bytes], bytes], password: str
) -> tuple[list[dict[str, Any]], list[bytes]]:
    seen: list[bytes] = []

    async def main() -> list[dict[str, Any]]:
        server = await serve_imap(capabilities, refuse, seen)
        try:
            return await asyncio.to_thread(watch_once, tmp_path, server, password)
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main()), seen


def logged(events: list[dict[str, Any]]) -> str:
    return " ".join(f"{k}={v}" for e in events for k, v in e.items())


def test_a_server_echoing_the_login_line_in_its_refusal_never_gets_the_password_logged(
    tmp_path: Path,
) -> None:
    password = "Hunter2-Correct-Horse"
    events, seen = run_against(
        tmp_path,
        "IMAP4rev1",
        lambda line: b"[AUTHENTICATIONFAILED] you sent: " + line,
        password,
    )
    assert any(password.encode() in line for line in seen)  # the server did see it
    (failure,) = [e for e in events if e["event"] == "imap.login_failed"]
    assert failure["error"] == (
        "login as 'alice' refused: the server refused the login [AUTHENTICATIONFAILED]"
    )
    assert password not in logged(events)


def test_a_response_code_that_carries_the_password_is_redacted(tmp_path: Path) -> None:
    password = "SESAME"
    events, _ = run_against(tmp_path, "IMAP4rev1", lambda line: b"[SESAME] no", password)
    (failure,) = [e for e in events if e["event"] == "imap.login_failed"]
    assert failure["error"].endswith("[redacted]") and password not in logged(events)


def test_a_non_ascii_password_goes_as_utf8_authenticate_plain_and_is_never_logged(
    tmp_path: Path,
) -> None:
    password = "pässwörd-ünïcode-€"
    events, seen = run_against(
        tmp_path,
        "IMAP4rev1 AUTH=PLAIN",
        lambda line: b"[AUTHENTICATIONFAILED] you sent: " + line,
        password,
    )
    (command,) = [n for n, line in enumerate(seen) if b" AUTHENTICATE PLAIN" in line]
    assert base64.b64decode(seen[command + 1]) == b"\0alice\0" + password.encode("utf-8")
    (failure,) = [e for e in events if e["event"] == "imap.login_failed"]
    text = logged(events)
    assert "the server refused the login [AUTHENTICATIONFAILED]" in failure["error"]
    assert not any(c in text for c in password if not c.isascii())


def test_a_non_ascii_password_without_authenticate_plain_is_refused_in_a_sentence(
    tmp_path: Path,
) -> None:
    password = "Grüße-aus-Köln"
    events, seen = run_against(tmp_path, "IMAP4rev1", lambda line: b"no", password)
    (failure,) = [e for e in events if e["event"] == "imap.login_failed"]
    assert "non-ASCII characters" in failure["error"]
    assert "does not offer AUTHENTICATE PLAIN" in failure["error"]
    assert not any(c in logged(events) for c in password if not c.isascii())
    assert not any(b"LOGIN" in line.upper().split(b" ")[1:2] for line in seen)  # nothing sent


# --- SMTP submission and ManageSieve ----------------------------------------------------------


async def serve_smtp(
    auth: str, answer: Callable[[str], bytes], seen: list[bytes]
) -> asyncio.Server:
    """A submission server offering AUTH ``auth``; ``answer(credentials)`` replies to the login,
    ``credentials`` being the decoded ``user/password`` it received."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fake ESMTP\r\n")
        user = ""
        while line := await reader.readline():
            seen.append(line)
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(f"250-fake\r\n250 AUTH {auth}\r\n".encode())
            elif verb == b"AUTH" and line.split()[1].upper() == b"PLAIN":
                _, who, secret = base64.b64decode(line.split()[2]).decode().split("\0")
                writer.write(answer(f"{who}/{secret}"))
            elif verb == b"AUTH":  # LOGIN: user, then password
                writer.write(b"334 VXNlcm5hbWU6\r\n")
                await writer.drain()
                user = base64.b64decode(await reader.readline()).decode()
                writer.write(b"334 UGFzc3dvcmQ6\r\n")
                await writer.drain()
                secret = base64.b64decode(await reader.readline()).decode()
                writer.write(answer(f"{user}/{secret}"))
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                while (await reader.readline()) != b".\r\n":
                    pass
                writer.write(b"250 2.0.0 queued as 42\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    return await asyncio.start_server(session, "127.0.0.1", 0)


def submit_to(
    tmp_path: Path, auth: str, answer: Callable[[str], bytes], password: str
) -> tuple[str, list[bytes]]:
    """submit() against the fake server: its reply, or the SubmitError's text."""
    from guardmail.channels.smtp.submit import submit
    from guardmail.config.warning import SmtpConfig
    from guardmail.errors import SubmitError

    (tmp_path / "smtp-pw").write_text(password + "\n", encoding="utf-8")
    seen: list[bytes] = []

    async def main() -> str:
        server = await serve_smtp(auth, answer, seen)
        cfg = SmtpConfig(
            host="127.0.0.1",
            port=server.sockets[0].getsockname()[1],
            tls="none",
            username="alice",
            password_file=tmp_path / "smtp-pw",
            timeout_seconds=10,
        )
        try:
            return await asyncio.to_thread(
                submit, cfg, sender="a@example.org", recipient="b@example.net", raw=b"x\r\n"
            )
        except SubmitError as exc:
            assert exc.certain
            return f"SubmitError: {exc}"
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main()), seen


def test_an_smtp_server_echoing_the_credentials_in_its_refusal_is_not_quoted(
    tmp_path: Path,
) -> None:
    password = "Hunter2-Correct-Horse"

    def echo(got: str) -> bytes:
        return f"535 5.7.8 no for {got}\r\n".encode()

    for auth in ("LOGIN", "PLAIN"):
        text, _ = submit_to(tmp_path, auth, echo, password)
        assert text == (
            "SubmitError: cannot submit via 127.0.0.1: login as 'alice' refused: "
            "the server refused the login (535 5.7.8)"
        )


def test_a_non_ascii_smtp_password_goes_as_utf8_auth_plain(tmp_path: Path) -> None:
    password = "pässwörd-€"
    accepted: list[str] = []

    def answer(got: str) -> bytes:
        accepted.append(got)
        return b"235 2.7.0 ok\r\n"

    text, _ = submit_to(tmp_path, "CRAM-MD5 PLAIN LOGIN", answer, password)
    assert text == "250 2.0.0 queued as 42" and accepted == [f"alice/{password}"]


def test_a_non_ascii_smtp_password_without_auth_plain_is_refused_in_a_sentence(
    tmp_path: Path,
) -> None:
    password = "Grüße-aus-Köln"
    text, seen = submit_to(tmp_path, "LOGIN", lambda got: b"235 ok\r\n", password)
    assert "non-ASCII characters" in text and "does not offer it" in text
    assert not any(c in text for c in password if not c.isascii())
    assert not any(line.upper().startswith(b"AUTH") for line in seen)


def test_a_managesieve_refusal_echoing_the_login_is_not_quoted() -> None:
    from guardmail.errors import PeerError
    from guardmail.sieve.managesieve import ManageSieve

    password = "Hunter2-Correct-Horse"

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'"IMPLEMENTATION" "fake"\r\n"SASL" "PLAIN"\r\nOK "ready"\r\n')
        line = await reader.readline()
        token = line.split(b'"')[3]
        got = base64.b64decode(token).decode().replace("\0", "/")
        writer.write(f'NO (AUTH-TOO-WEAK) "you sent {got}"\r\n'.encode())
        await writer.drain()
        await reader.readline()
        writer.write(b'OK "bye"\r\n')
        await writer.drain()
        writer.close()

    def login(port: int) -> str:
        client = ManageSieve("127.0.0.1", port, timeout=10)
        try:
            client.authenticate("alice", password)
        except PeerError as exc:
            return str(exc)
        finally:
            client.logout()
        return "logged in"

    async def main() -> str:
        server = await asyncio.start_server(session, "127.0.0.1", 0)
        try:
            return await asyncio.to_thread(login, server.sockets[0].getsockname()[1])
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(main()) == "ManageSieve server 127.0.0.1 refused the login as 'alice'"


def test_a_config_error_under_password_command_never_quotes_its_value(tmp_path: Path) -> None:
    from guardmail.config.settings import load_config
    from guardmail.errors import ConfigError

    config = tmp_path / "guardmail.yaml"
    config.write_text(
        f"state_dir: {tmp_path}/var\nsources:\n  imap:\n    - name: a\n      host: h.example\n"
        f"      username: u\n      password_command: 'pass show --token={TOKEN}'\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value) == (
        f"{config}:7:25: sources.imap.0.password_command: should be a valid list (got a string)"
    )
