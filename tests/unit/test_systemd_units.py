"""The systemd units: must-have directives, the same hardening in both, and systemd's own
verdict (``systemd-analyze security`` exposure at most 2.0, ``systemd-analyze verify`` clean)."""

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from guardmail.cli import main
from guardmail.config.settings import load_config

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNITS = ("guardmail.service", "guardmail@.service")
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")

# Directives each unit must carry, with their exact value.
REQUIRED = {
    "Type": "notify",
    "NotifyAccess": "main",
    "WatchdogSec": "30",
    "Restart": "on-failure",
    "RestartSec": "5",
    "User": "guardmail",
    "Group": "guardmail",
    "UMask": "0077",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "MemoryDenyWriteExecute": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "SystemCallArchitectures": "native",
    "StateDirectoryMode": "0700",
    "ExecReload": "/bin/kill -HUP $MAINPID",
}
# What may differ between the single unit and the per-tenant template.
PER_INSTANCE = {
    "Description",
    "ExecStart",
    "StateDirectory",
    "WorkingDirectory",
    "SyslogIdentifier",
}


def directives(unit: str) -> dict[str, list[tuple[str, str]]]:
    """Section name -> (key, value) in file order; repeated keys kept, comments dropped."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for raw in (SYSTEMD / unit).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{unit}: not a directive: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def service(unit: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in directives(unit)["Service"]:
        values.setdefault(key, []).append(value)
    return values


@pytest.mark.parametrize("unit", UNITS)
def test_unit_has_the_must_have_directives(unit: str) -> None:
    s = service(unit)
    for key, value in REQUIRED.items():
        assert s.get(key) == [value], f"{unit}: {key}= should be {value!r}, is {s.get(key)}"
    assert s["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert re.fullmatch(r"/\S+/guardmail -c /etc/guardmail/\S+\.yaml run", s["ExecStart"][0])
    assert "IPAddressDeny" not in s  # the servers guardmail reaches may be anywhere
    assert directives(unit)["Install"] == [("WantedBy", "multi-user.target")]


def test_single_unit_keeps_state_in_var_lib_guardmail() -> None:
    s = service("guardmail.service")
    assert s["StateDirectory"] == ["guardmail"]
    assert s["WorkingDirectory"] == ["/var/lib/guardmail"]
    assert s["ExecStart"][0].endswith(" -c /etc/guardmail/guardmail.yaml run")


def test_template_gives_each_tenant_its_config_and_state() -> None:
    s = service("guardmail@.service")
    assert s["StateDirectory"] == ["guardmail/%i"]
    assert s["WorkingDirectory"] == ["/var/lib/guardmail/%i"]
    assert s["ExecStart"][0].endswith(" -c /etc/guardmail/tenants/%i.yaml run")


def test_template_has_exactly_the_hardening_of_the_single_unit() -> None:
    single, template = directives("guardmail.service"), directives("guardmail@.service")
    assert single.keys() == template.keys()
    for section in single:
        ours = [d for d in single[section] if d[0] not in PER_INSTANCE]
        theirs = [d for d in template[section] if d[0] not in PER_INSTANCE]
        assert ours == theirs, f"[{section}] differs"


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_security_exposure_is_at_most_2(
    unit: str, record_property: Callable[[str, object], None], capsys: pytest.CaptureFixture[str]
) -> None:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(SYSTEMD / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, f"no exposure level in:\n{done.stdout}\n{done.stderr}"
    exposure = float(found.group(1))
    record_property(f"exposure {unit}", exposure)
    with capsys.disabled():  # shown in every run's output, not only with -s
        print(f"\nsystemd-analyze security {unit}: exposure {exposure}", file=sys.stderr)
    assert exposure <= MAX_EXPOSURE, done.stdout


@needs_analyze
def test_systemd_analyze_verify_finds_nothing_in_the_installed_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # verify needs ExecStart= to name a real program: install as install-service does, with
    # this interpreter's guardmail. It works offline (no running systemd needed).
    program = Path(sys.executable).parent / "guardmail"
    args = ["install-service", "--root", str(tmp_path), "--no-user", "--exec", str(program)]
    assert main(args) == 0
    capsys.readouterr()
    unit_dir = tmp_path / "etc/systemd/system"
    (unit_dir / "guardmail@alice.service").symlink_to("guardmail@.service")
    assert ANALYZE is not None
    for unit in (*UNITS, "guardmail@alice.service"):
        done = subprocess.run(
            [ANALYZE, "verify", "--man=no", str(unit_dir / unit)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # verify exits 0 even for unknown keys or bad values; anything it prints is a finding.
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), unit


def _printed_milter_setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    program = Path(sys.executable).parent / "guardmail"
    args = ["install-service", "--root", str(tmp_path), "--no-user", "--exec", str(program)]
    assert main(args) == 0
    out = capsys.readouterr().out
    found = dict(
        re.findall(
            r"^\s+(smtpd_milters|non_smtpd_milters|milter_default_action) = (\S+)$", out, re.M
        )
    )
    found["listen"] = re.search(r"listen: (unix:\S+) and socket_group: (\S+)", out).group(1)  # type: ignore[union-attr]
    found["group"] = re.search(r"socket_group: (\S+)\n", out).group(1)  # type: ignore[union-attr]
    found["dir"] = re.search(r"install -d -o guardmail -g (\S+) -m 0750 (\S+)", out).group(2)  # type: ignore[union-attr]
    found["dropin"] = re.search(r"(\S+/guardmail\.service\.d/milter\.conf)", out).group(1)  # type: ignore[union-attr]
    return found


def test_the_printed_milter_lines_agree_with_the_readme_and_the_drop_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    printed = _printed_milter_setup(tmp_path, capsys)
    socket = Path(printed["listen"].removeprefix("unix:"))
    # Postfix's chrooted smtpd and cleanup see the socket relative to /var/spool/postfix.
    in_chroot = "unix:/" + socket.relative_to("/var/spool/postfix").as_posix()
    assert printed["smtpd_milters"] == printed["non_smtpd_milters"] == in_chroot
    assert printed["milter_default_action"] == "tempfail"
    assert printed["dir"] == str(socket.parent) and printed["group"] == "postfix"
    assert printed["dropin"] == "/etc/systemd/system/guardmail.service.d/milter.conf"
    readme = (SYSTEMD.parent / "plugins" / "postfix" / "README.md").read_text()
    assert f"listen: {printed['listen']}" in readme and "socket_group: postfix" in readme
    for key in ("smtpd_milters", "non_smtpd_milters", "milter_default_action"):
        assert f"\n{key} = {printed[key]}\n" in readme, key
    dropin = dict(
        line.split("=", 1)
        for line in (SYSTEMD / "milter.conf").read_text().splitlines()
        if line and not line.startswith(("#", "["))
    )
    assert dropin == {
        "ReadWritePaths": str(socket.parent),
        "SupplementaryGroups": printed["group"],
        "PrivateUsers": "no",  # the postfix group must be visible inside the service
    }
    # And guardmail takes the config those lines describe.
    (tmp_path / "m.yaml").write_text(
        f"state_dir: {tmp_path}/var\nsources:\n  smtp_filter:\n    mode: milter\n"
        f"    listen: {printed['listen']}\n    socket_group: {printed['group']}\n"
        f"    tenants_dir: {tmp_path}\n"
    )
    smtp = load_config(tmp_path / "m.yaml").settings.sources.smtp_filter
    assert smtp is not None and smtp.listen_unix == socket and smtp.mode == "milter"


@needs_analyze
def test_systemd_analyze_verifies_the_unit_with_the_milter_drop_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _printed_milter_setup(tmp_path, capsys)
    dropins = tmp_path / "etc/systemd/system/guardmail.service.d"
    dropins.mkdir()
    (dropins / "milter.conf").write_text((SYSTEMD / "milter.conf").read_text())
    assert ANALYZE is not None
    unit = tmp_path / "etc/systemd/system/guardmail.service"
    done = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    (dropins / "milter.conf").write_text("[Service]\nNoSuchKey=1\n")  # the drop-in is read
    done = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert "NoSuchKey" in done.stderr
    (dropins / "milter.conf").write_text((SYSTEMD / "milter.conf").read_text())
    security = subprocess.run(
        [ANALYZE, "security", "--offline=true", f"--root={tmp_path}", "guardmail.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    exposure = float(re.findall(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)[0])
    assert exposure <= MAX_EXPOSURE, security.stdout
