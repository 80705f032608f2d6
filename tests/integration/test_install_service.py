"""``guardmail install-service`` into a scratch root, and the daemon under the unit's sandbox
where it can be reproduced without systemd (the MemoryDenyWriteExecute= system call filter,
sd_notify over a real socket)."""

import os
import platform
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardmail.cli import main
from guardmail.commands.service import (
    EXAMPLE_MAILDIR,
    _hidden_from_service,
    render_unit,
    system_config,
)
from guardmail.config.settings import load_config
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROGRAM = str(Path(sys.executable).parent / "guardmail")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="setting owners needs root")


def install(capsys: pytest.CaptureFixture[str], root: Path, *extra: str) -> tuple[int, str]:
    code = main(["install-service", "--root", str(root), "--exec", PROGRAM, *extra])
    out, err = capsys.readouterr()
    return code, out + err


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_service_puts_units_config_and_directories_under_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = install(capsys, tmp_path, "--no-user")
    assert code == 0, out
    units = tmp_path / "etc/systemd/system"
    for name in ("guardmail.service", "guardmail@.service"):
        text = (units / name).read_text()
        assert text == render_unit(
            (REPO / "systemd" / name).read_text(), exec_path=PROGRAM, source=REPO
        )
        assert f"\nExecStart={PROGRAM} -c /etc/guardmail/" in text
        assert f"\nDocumentation=file:{REPO}/docs/deployment.md\n" in text
        assert mode(units / name) == 0o644
    etc = tmp_path / "etc/guardmail"
    assert (mode(etc), mode(etc / "tenants"), mode(etc / "secrets")) == (0o750, 0o750, 0o700)
    assert mode(tmp_path / "var/lib/guardmail") == 0o700
    assert mode(etc / "guardmail.yaml") == 0o640
    settings = load_config(etc / "guardmail.yaml").settings
    assert settings.state_dir == Path("/var/lib/guardmail")
    assert settings.sources.maildir == []  # to be chosen, and granted to the service
    assert f"#   - path: {EXAMPLE_MAILDIR}" in (etc / "guardmail.yaml").read_text()
    assert "systemctl daemon-reload && systemctl enable --now guardmail" in out


def test_second_run_changes_nothing_and_never_overwrites_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert install(capsys, tmp_path, "--no-user")[0] == 0
    config = tmp_path / "etc/guardmail/guardmail.yaml"
    config.write_text("offenders: []\n# the admin's own\n")
    (tmp_path / "etc/guardmail/secrets").chmod(0o755)  # drifted: is put back
    code, out = install(capsys, tmp_path, "--no-user")
    assert code == 0, out
    assert config.read_text() == "offenders: []\n# the admin's own\n"
    assert f"kept {config}" in out
    steps = [line for line in out.splitlines()[: out.splitlines().index("")]]
    assert [s.split()[0] for s in steps] == [
        "skipped", "unchanged", "unchanged", "unchanged", "unchanged", "fixed", "unchanged", "kept"
    ]  # fmt: skip
    assert mode(tmp_path / "etc/guardmail/secrets") == 0o700


def test_dry_run_prints_the_plan_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = install(capsys, tmp_path, "--dry-run")
    assert code == 0, out
    assert list(tmp_path.iterdir()) == []
    assert "would create system user guardmail: " in out and "--system" in out
    assert f"would install {tmp_path}/etc/systemd/system/guardmail.service" in out
    assert f"would create {tmp_path}/etc/guardmail/secrets (0700 guardmail:guardmail)" in out
    # The Postfix milter lines, with tempfail: mail waits while guardmail is down.
    assert "non_smtpd_milters = unix:/guardmail/milter.sock" in out
    assert "milter_default_action = tempfail" in out


@as_root
def test_user_is_created_in_the_root_and_owns_state_and_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("useradd", path="/usr/sbin:/sbin:" + os.environ.get("PATH", "")) is None:
        pytest.skip("useradd is not installed")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n")
    for shadow in ("shadow", "gshadow"):
        (etc / shadow).write_text("root:*::\n" if shadow == "gshadow" else "root:*:1::::::\n")
        (etc / shadow).chmod(0o600)
    host_passwd = Path("/etc/passwd").read_bytes()

    code, out = install(capsys, tmp_path)  # useradd --root tmp_path: this machine is untouched
    assert code == 0, out
    assert Path("/etc/passwd").read_bytes() == host_passwd
    [entry] = [e for e in (etc / "passwd").read_text().splitlines() if e.startswith("guardmail:")]
    _, _, uid, gid, _, home, shell = entry.split(":")
    assert (home, shell) == ("/var/lib/guardmail", "/usr/sbin/nologin")
    assert int(uid) < 1000  # a system user
    owners = {
        "etc/guardmail": (0, int(gid)),
        "etc/guardmail/tenants": (0, int(gid)),
        "etc/guardmail/guardmail.yaml": (0, int(gid)),
        "etc/guardmail/secrets": (int(uid), int(gid)),
        "var/lib/guardmail": (int(uid), int(gid)),
    }
    for path, owner in owners.items():
        st = (tmp_path / path).stat()
        assert (st.st_uid, st.st_gid) == owner, path
    again = install(capsys, tmp_path)
    assert again[0] == 0 and f"unchanged user guardmail (uid {uid}, gid {gid})" in again[1]
    assert sum(line.startswith("unchanged ") for line in again[1].splitlines()) == 7


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--exec", "guardmail"], "--exec must be an absolute path"),
        (["--exec", "/opt/my guardmail/bin/guardmail"], "--exec must be an absolute path"),
        (["--source", "/nonexistent"], "no unit files in /nonexistent/systemd"),
    ],
)
def test_bad_arguments_exit_2_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["install-service", "--root", str(tmp_path), "--no-user", *args])
    assert code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_program_whose_interpreter_is_under_home_is_refused(tmp_path: Path) -> None:
    # ProtectHome=yes would hide the interpreter from the service: status=203/EXEC at start.
    script = tmp_path / "guardmail"
    script.write_text("#!/home/alice/.venv/bin/python\nimport guardmail\n")
    assert _hidden_from_service(str(script)) == Path("/home/alice/.venv/bin/python")
    assert _hidden_from_service("/root/bin/guardmail") == Path("/root/bin/guardmail")
    assert _hidden_from_service("/usr/bin/env") is None


def test_system_config_comments_the_maildir_out_and_sets_the_state_dir() -> None:
    example = (REPO / "config/guardmail.example.yaml").read_text()
    text = system_config(example, schema=REPO / "config/guardmail.schema.json")
    assert text.startswith(
        f"# yaml-language-server: $schema={REPO}/config/guardmail.schema.json\n# Installed by"
    )
    assert "\nstate_dir: /var/lib/guardmail " in text and "./var" not in text.split("#")[0]
    assert "\n  maildir: []" in text
    assert [line for line in text.splitlines() if line.startswith("    - path:")] == []
    # The example's own Maildir may be created; a real one is chosen and must exist.
    assert "create:" not in text and "new directory that nothing" not in text


# --- the daemon under the unit's MemoryDenyWriteExecute=yes -----------------------------------

# systemd (252) implements MemoryDenyWriteExecute=yes as a seccomp filter returning EPERM for:
# mmap with PROT_WRITE|PROT_EXEC, mprotect/pkey_mprotect with PROT_EXEC, shmat with SHM_EXEC.
# MDWE_EXEC installs the same filter, then execs its arguments.


def _seccomp_filter() -> bytes:
    """The BPF program described above, as struct sock_filter[] bytes (x86-64)."""
    ld, jeq, and_, ret = 0x20, 0x15, 0x54, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM
    arg2 = 16 + 2 * 8  # seccomp_data.args[2], low 32 bits on little-endian x86-64
    rules = [(9, 0x6), (10, 0x4), (329, 0x4), (30, 0o100000)]  # mmap mprotect pkey_mprotect shmat
    n = len(rules)
    prog: list[tuple[int, int, int, int]] = [(ld, 0, 0, 4)]  # arch
    prog.append((jeq, 0, 1 + n + 1 + 5 * n - 1, 0xC000003E))  # not x86-64: last RET ALLOW
    prog.append((ld, 0, 0, 0))  # syscall number
    for i, (nr, _) in enumerate(rules):
        # Jump to this rule's check block, which starts after the remaining JEQs and one RET.
        prog.append((jeq, (n - 1 - i) + 1 + 5 * i, 0, nr))
    prog.append((ret, 0, 0, allow))
    for _, mask in rules:
        prog += [(ld, 0, 0, arg2), (and_, 0, 0, mask), (jeq, 0, 1, mask)]
        prog += [(ret, 0, 0, deny), (ret, 0, 0, allow)]
    prog[1] = (jeq, 0, len(prog) - 2 - 1, 0xC000003E)  # to the final RET ALLOW
    return b"".join(
        code.to_bytes(2, "little") + bytes([jt, jf]) + k.to_bytes(4, "little")
        for code, jt, jf, k in prog
    )


MDWE_EXEC = r"""
import ctypes, os, sys
filt = bytes.fromhex(sys.argv[1])
buf = ctypes.create_string_buffer(filt, len(filt))
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Prog(len(filt) // 8, ctypes.cast(buf, ctypes.c_void_p))
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
u = ctypes.c_ulong
if libc.prctl(PR_SET_NO_NEW_PRIVS, u(1), u(0), u(0), u(0)) or libc.prctl(
    PR_SET_SECCOMP, u(SECCOMP_MODE_FILTER), ctypes.byref(prog), u(0), u(0)
):
    sys.exit(f"seccomp: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[2], sys.argv[2:])
"""

needs_x86_64_linux = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64",
    reason="the seccomp filter is written for x86-64 Linux system call numbers",
)


def under_mdwe(*argv: str) -> list[str]:
    return [sys.executable, "-c", MDWE_EXEC, _seccomp_filter().hex(), *argv]


@needs_x86_64_linux
def test_the_mdwe_filter_refuses_writable_executable_memory() -> None:
    # The control: without this the next test could pass with a filter that does nothing.
    probe = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)"
    refused = subprocess.run(
        under_mdwe(sys.executable, "-c", probe), capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr
    fine = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE)"
    allowed = subprocess.run(under_mdwe(sys.executable, "-c", fine), timeout=60)
    assert allowed.returncode == 0


CONFIG = """\
state_dir: {root}/var
offenders:
  - name: Example Offender
    addresses: [stalker@example.net]
sources:
  maildir:
    - path: {root}/Maildir
      rescan_seconds: 0.3
"""


@pytest.fixture
def maildir_config(tmp_path: Path) -> Iterator[Path]:
    for sub in ("tmp", "new", "cur"):
        (tmp_path / "Maildir" / sub).mkdir(parents=True)
    config = tmp_path / "guardmail.yaml"
    config.write_text(CONFIG.format(root=tmp_path))
    yield config


def deliver(maildir: Path, name: str, raw: bytes) -> None:
    (maildir / "tmp" / name).write_bytes(raw)
    os.rename(maildir / "tmp" / name, maildir / "new" / name)


def stop(proc: "subprocess.Popen[bytes]") -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
        raise


@needs_x86_64_linux
def test_daemon_quarantines_and_reloads_under_memory_deny_write_execute(
    tmp_path: Path, maildir_config: Path
) -> None:
    log = tmp_path / "daemon.log"
    argv = under_mdwe(sys.executable, "-m", "guardmail", "-c", str(maildir_config), "run")
    with log.open("wb") as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
    try:
        maildir = tmp_path / "Maildir"

        def logged(text: str) -> bool:
            assert proc.poll() is None, f"the daemon exited:\n{log.read_text()}"
            return text in log.read_text()

        wait_for(lambda: logged("maildir.watching"), what="daemon start")
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert "\nSeccomp:\t2\n" in status and "\nNoNewPrivs:\t1\n" in status
        deliver(maildir, "1.host", b"From: stalker@example.net\r\n\r\nhi\r\n")
        wait_for(lambda: (maildir / ".Quarantine/new/1.host").exists(), what="quarantine")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: logged("config.reloaded"), what="reload")
    finally:
        assert stop(proc) == 0, log.read_text()
    assert "Operation not permitted" not in log.read_text()


# --- sd_notify from the real daemon ---------------------------------------------------------


def test_daemon_tells_systemd_ready_watchdog_reloading_and_stopping(
    tmp_path: Path, maildir_config: Path
) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(20)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"}
    argv = [sys.executable, "-m", "guardmail", "-c", str(maildir_config), "run"]
    log = tmp_path / "daemon.log"
    with log.open("wb") as stderr, sock:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stderr=stderr)

        pings = 0

        def next_state() -> bytes:
            """The next datagram that is not a watchdog ping (those are counted)."""
            nonlocal pings
            while (data := sock.recv(4096)) == b"WATCHDOG=1":
                pings += 1
            return data

        try:
            assert next_state().startswith(b"READY=1\nSTATUS=")
            while pings < 2:  # every 0.1 s: half of WATCHDOG_USEC
                assert sock.recv(4096) == b"WATCHDOG=1"
                pings += 1
            proc.send_signal(signal.SIGHUP)
            assert next_state().startswith(b"RELOADING=1\nMONOTONIC_USEC=")
            assert next_state().startswith(b"READY=1\nSTATUS=")
            proc.send_signal(signal.SIGTERM)
            assert next_state() == b"STOPPING=1"
        finally:
            assert stop(proc) == 0, log.read_text()
