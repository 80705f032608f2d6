"""install-service: installs guardmail as a hardened systemd service.

Contracts:
- Idempotent: running it again converges on the same state and reports "unchanged". What it
  converges: the system user and group ``guardmail``; the units ``guardmail.service`` and
  ``guardmail@.service`` in ``/etc/systemd/system`` (ours: overwritten, local changes belong in
  drop-ins); the directories ``/etc/guardmail`` (0750 root:guardmail), ``/etc/guardmail/tenants``
  (0750 root:guardmail), ``/etc/guardmail/secrets`` (0700 guardmail:guardmail) and
  ``/var/lib/guardmail`` (0700 guardmail:guardmail).
- ``/etc/guardmail/guardmail.yaml`` is written from ``config/guardmail.example.yaml`` only when
  absent, never overwritten; what is written passes ``check-config`` (checked before writing).
- The units' ``ExecStart=`` names the guardmail program: ``--exec``, or by default the one next
  to the running interpreter (``sys.executable``'s directory, symlinks not resolved, so a venv's
  program is named, not the system Python's).
- ``--root DIR`` puts every path under DIR (tests, packaging). There the program is not checked
  and no owner is set unless DIR/etc/passwd holds the user; ``--no-user`` skips ``useradd``.
- ``--dry-run`` prints the same plan, prefixed "would", and changes nothing.
- Unit files and the example config are read from the guardmail checkout the package runs from
  (``--source`` to name another): a wheel install does not carry them.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from guardmail.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Subparsers
from guardmail.commands.sysuser import STATE_DIR, USER, Owner, lookup_owner, useradd_command
from guardmail.config.settings import load_config
from guardmail.errors import ConfigError, GuardmailError

UNITS = ("guardmail.service", "guardmail@.service")
UNIT_DIR = "etc/systemd/system"
CONFIG_DIR = "etc/guardmail"
# Milter mode on a Unix socket (plugins/postfix/README.md): inside Postfix's chroot, which
# Debian's smtpd and cleanup run in; systemd/milter.conf lets the service write there.
POSTFIX_CHROOT = Path("/var/spool/postfix")
MILTER_SOCKET = POSTFIX_CHROOT / "guardmail" / "milter.sock"
EXAMPLE_MAILDIR = "/var/vmail/example.org/alice/Maildir"
# Characters an ExecStart= program path may hold without systemd quoting or % / $ escapes.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._+@:/-]+")
# ProtectHome=yes hides these from the service: a program (or its interpreter) there fails.
_HIDDEN = (Path("/home"), Path("/root"), Path("/run/user"))


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "install-service",
        help="install the systemd units, user, /etc/guardmail and state directory (as root)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument(
        "--exec", dest="exec_path", metavar="PATH", help="guardmail program for ExecStart="
    )
    p.add_argument("--root", type=Path, default=Path("/"), metavar="DIR", help="install under DIR")
    p.add_argument("--source", type=Path, metavar="DIR", help="guardmail checkout with systemd/")
    p.add_argument("--no-user", action="store_true", help="do not create the guardmail user")
    p.add_argument("--dry-run", action="store_true", help="print what would be done, do nothing")
    p.set_defaults(
        handler=cmd_install_service,
        no_tenant="it installs the one service for every tenant (and guardmail@.service, "
        "whose instances each run with their own config)",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Where to install from and to, and how."""

    root: Path
    """Every installed path is under it (``/`` on a real system)."""
    source: Path
    """The checkout holding ``systemd/`` and ``config/``."""
    exec_path: str
    """The guardmail program named by ExecStart=."""
    dry_run: bool

    def at(self, path: str) -> Path:
        return self.root / path.lstrip("/")


class _Report:
    """Prints what was (or would be) done, one line per step."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run

    def done(self, did: str, would: str, what: str) -> None:
        print(f"{'would ' + would if self.dry_run else did} {what}")

    def same(self, what: str) -> None:
        print(f"unchanged {what}")


def default_source() -> Path:
    """The checkout this package runs from (an editable install, or a source tree)."""
    return Path(__file__).resolve().parents[2]


def default_exec() -> str:
    """The guardmail program next to the running interpreter, e.g. /opt/guardmail/.venv/bin."""
    return os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "guardmail")


def render_unit(unit: str, *, exec_path: str, source: Path) -> str:
    """A unit as installed: ExecStart= runs ``exec_path``, Documentation= points into ``source``."""
    return set_exec_start(unit, exec_path).replace(
        "Documentation=file:/opt/guardmail/", f"Documentation=file:{source}/"
    )


def set_exec_start(unit: str, exec_path: str) -> str:
    """``unit`` with the program of its one ExecStart= line replaced by ``exec_path``."""
    new, count = re.subn(r"(?m)^ExecStart=\S+", lambda _: f"ExecStart={exec_path}", unit)
    if count != 1:
        raise GuardmailError(f"expected one ExecStart= line in the unit, found {count}")
    return new


def system_config(example: str, *, schema: Path | None = None) -> str:
    """The example configuration made for the service: state in /var/lib/guardmail and the
    Maildir source commented out (its path must be chosen and granted to the service)."""
    text, count = re.subn(
        r"(?m)^state_dir:[^\n]*$",
        f"state_dir: {STATE_DIR}          # systemd StateDirectory=; back it up",
        example,
    )
    if count == 0:
        text = f"state_dir: {STATE_DIR}\n{text}"
    if schema is not None:
        text = text.replace("$schema=guardmail.schema.json", f"$schema={schema}", 1)
    lines = text.split("\n")
    try:
        start = lines.index("  maildir:")
    except ValueError:
        return _with_header(text)
    end = start + 1
    while end < len(lines) and (lines[end].startswith("   ") or not lines[end].strip()):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # keep blank lines after the block where they were
    block = [
        "  maildir: []       # none yet: uncomment and adjust, then give the service access to it",
        '                    # (docs/deployment.md, "Giving the service a Maildir")',
    ]
    skipping = False
    for line in lines[start:end]:
        # The example's `create: true` (and its comment) is for its own ./var/Maildir only.
        skipping = line.strip().startswith("create:") or (skipping and line.startswith(" " * 20))
        if skipping:
            continue
        body = line[2:].replace("./var/Maildir", EXAMPLE_MAILDIR)
        block.append(f"  {body}" if body.lstrip().startswith("#") else f"  # {body}")
    return _with_header("\n".join([*lines[:start], *block, *lines[end:]]))


def _with_header(text: str) -> str:
    """``text`` with a note on where it came from, after an editor's schema modeline if any."""
    header = (
        "# Installed by `guardmail install-service` from config/guardmail.example.yaml;\n"
        "# it is never overwritten. Check edits with:\n"
        "#   guardmail -c /etc/guardmail/guardmail.yaml check-config\n"
    )
    if text.startswith("# yaml-language-server:"):
        first, _, rest = text.partition("\n")
        return f"{first}\n{header}{rest}"
    return header + text


def ensure_user(plan: Plan, report: _Report, *, create: bool) -> Owner | None:
    owner = lookup_owner(plan.root)
    if owner is not None:
        report.same(f"user {USER} (uid {owner.uid}, gid {owner.gid})")
        return owner
    if not create:
        print(f"skipped user {USER} (--no-user): owners are left as they are")
        return None
    command = useradd_command(plan.root)
    report.done("created", "create", f"system user {USER}: {shlex.join(command)}")
    if plan.dry_run:
        return None
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise GuardmailError(
            f"useradd exited with status {done.returncode}: {done.stderr.strip() or done.stdout}"
        )
    owner = lookup_owner(plan.root)
    if owner is None:
        raise GuardmailError(f"useradd succeeded but user or group {USER} cannot be found")
    return owner


def _write_file(path: Path, data: str, mode: int, owner: Owner | None) -> None:
    """Replace ``path`` atomically: temp file, mode, owner, fsync, rename, directory fsync."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            if owner is not None:
                os.fchown(f.fileno(), owner.uid, owner.gid)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def ensure_dir(
    plan: Plan, report: _Report, path: Path, mode: int, owner: Owner | None, who: str
) -> None:
    """``path`` exists with ``mode`` and, when known, ``owner`` (``who`` names it, or is "")."""
    what = f"{path} ({mode:04o} {who or 'owner unchanged'})"
    if not path.is_dir():
        report.done("created", "create", what)
        if not plan.dry_run:
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)
            if owner is not None:
                os.chown(path, owner.uid, owner.gid)
        return
    st = path.stat()
    ok = (st.st_mode & 0o7777) == mode
    if owner is not None:
        ok = ok and (st.st_uid, st.st_gid) == (owner.uid, owner.gid)
    if ok:
        report.same(what)
        return
    report.done("fixed", "fix", what)
    if not plan.dry_run:
        path.chmod(mode)
        if owner is not None:
            os.chown(path, owner.uid, owner.gid)


def install_units(plan: Plan, report: _Report) -> None:
    unit_dir = plan.at(UNIT_DIR)
    if not unit_dir.is_dir():
        report.done("created", "create", str(unit_dir))
        if not plan.dry_run:
            unit_dir.mkdir(mode=0o755, parents=True)
    for name in UNITS:
        source = (plan.source / "systemd" / name).read_text()
        text = render_unit(source, exec_path=plan.exec_path, source=plan.source)
        target = unit_dir / name
        what = f"{target} (ExecStart={plan.exec_path})"
        if target.is_file() and target.read_text() == text:
            report.same(what)
            continue
        report.done("updated" if target.exists() else "installed", "install", what)
        if not plan.dry_run:
            _write_file(target, text, 0o644, None)


def install_config(plan: Plan, report: _Report, owner: Owner | None) -> None:
    target = plan.at(CONFIG_DIR) / "guardmail.yaml"
    if target.exists():
        print(f"kept {target}: it exists, and install-service never overwrites it")
        return
    example = (plan.source / "config" / "guardmail.example.yaml").read_text()
    text = system_config(example, schema=plan.source / "config" / "guardmail.schema.json")
    _check_config(text)
    report.done("created", "create", f"{target} (0640, from config/guardmail.example.yaml)")
    if not plan.dry_run:
        _write_file(target, text, 0o640, Owner(uid=0, gid=owner.gid) if owner else None)


def _check_config(text: str) -> None:
    """Refuse to install a configuration that ``check-config`` would reject (a bug here)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "guardmail.yaml"
        path.write_text(text)
        try:
            load_config(path, cwd=Path(STATE_DIR))
        except ConfigError as exc:
            issues = "; ".join(str(i) for i in exc.issues)
            raise GuardmailError(f"the configuration to install is invalid: {issues}") from None


def _hidden_from_service(exec_path: str) -> Path | None:
    """The program, or its script's interpreter, when ProtectHome=yes would hide it."""
    program = Path(os.path.realpath(exec_path))
    candidates = [Path(exec_path), program]
    try:
        with program.open("rb") as f:
            first = f.readline(4096)
    except OSError:
        first = b""
    if first.startswith(b"#!"):
        interpreter = os.fsdecode(first[2:]).split()
        if interpreter:
            candidates += [Path(interpreter[0]), Path(os.path.realpath(interpreter[0]))]
    for path in candidates:
        if any(path.is_relative_to(h) for h in _HIDDEN):
            return path
    return None


def _usage(message: str) -> int:
    print(f"guardmail: install-service: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_install_service(args: argparse.Namespace) -> int:
    root = args.root.absolute()
    source = (args.source or default_source()).absolute()
    exec_path = args.exec_path or default_exec()
    live = root == Path("/")
    if not all((source / "systemd" / unit).is_file() for unit in UNITS):
        return _usage(
            f"no unit files in {source / 'systemd'}: run it from a guardmail checkout "
            "(an editable install) or pass --source with one"
        )
    if not _PLAIN_PATH.fullmatch(exec_path):
        return _usage(f"--exec must be an absolute path of plain characters, not {exec_path!r}")
    if live and not (os.path.isfile(exec_path) and os.access(exec_path, os.X_OK)):
        return _usage(f"no guardmail program at {exec_path}; pass --exec PATH")
    hidden = _hidden_from_service(exec_path) if live else None
    if hidden is not None:
        return _usage(
            f"{hidden} is under /home, /root or /run/user, which the service cannot see "
            "(ProtectHome=yes); install guardmail under /opt (docs/deployment.md)"
        )
    if live and os.geteuid() != 0 and not args.dry_run:
        return _usage("run it as root (or see what it would do with --dry-run)")
    plan = Plan(root=root, source=source, exec_path=exec_path, dry_run=args.dry_run)
    report = _Report(args.dry_run)
    try:
        owner = ensure_user(plan, report, create=not args.no_user)
        if owner is not None and os.geteuid() != 0 and not args.dry_run:
            return _usage(f"user {USER} exists under {root}: setting owners needs root")
        # In a dry run the user may not exist yet; say whom the owner will be all the same.
        named = owner is not None or (args.dry_run and not args.no_user)
        root_owned, user_owned = (f"root:{USER}", f"{USER}:{USER}") if named else ("", "")
        as_root = Owner(uid=0, gid=owner.gid) if owner else None
        config_dir = plan.at(CONFIG_DIR)
        install_units(plan, report)
        ensure_dir(plan, report, config_dir, 0o750, as_root, root_owned)
        ensure_dir(plan, report, config_dir / "tenants", 0o750, as_root, root_owned)
        ensure_dir(plan, report, config_dir / "secrets", 0o700, owner, user_owned)
        ensure_dir(plan, report, plan.at(STATE_DIR), 0o700, owner, user_owned)
        install_config(plan, report, owner)
    except OSError as exc:
        print(f"guardmail: install-service: {exc}", file=sys.stderr)
        return EXIT_FAILED
    _next_steps(plan)
    return EXIT_OK


def _next_steps(plan: Plan) -> None:
    config = "/etc/guardmail/guardmail.yaml"
    in_chroot = "/" + MILTER_SOCKET.relative_to(POSTFIX_CHROOT).as_posix()
    print(
        "\nNext steps"
        + ("" if plan.root == Path("/") else f" (on the system installed in {plan.root})")
        + f""":
  1. Edit {config}: your offenders and your Maildir, then check it:
       runuser -u {USER} -- {plan.exec_path} -c {config} check-config
  2. Let the service reach the Maildir: systemctl edit guardmail (docs/deployment.md)
  3. systemctl daemon-reload && systemctl enable --now guardmail
  4. systemctl status guardmail; journalctl -u guardmail
  For an ISP's Postfix with sources.smtp_filter.mode: milter, add to /etc/postfix/main.cf
  (plugins/postfix/README.md, "Milter mode"; the socket path as seen by a chrooted smtpd):
       smtpd_milters = unix:{in_chroot}
       non_smtpd_milters = unix:{in_chroot}
       milter_default_action = tempfail
  tempfail, not Postfix's default accept: while guardmail is down, mail must wait, not pass.
  With listen: unix:{MILTER_SOCKET} and socket_group: postfix
  in guardmail.yaml, let the service write the socket there (systemd/milter.conf, a drop-in):
       install -d -o {USER} -g postfix -m 0750 {MILTER_SOCKET.parent}
       install -D -m 0644 {plan.source / "systemd" / "milter.conf"} \\
         /{UNIT_DIR}/guardmail.service.d/milter.conf
"""
    )
