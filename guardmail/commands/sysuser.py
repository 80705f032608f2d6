"""The system user and group guardmail runs as (``install-service``), on / or under another root.

Reads ``/etc/passwd`` and ``/etc/group`` of a target root directly (an image being prepared),
and the running system's through ``pwd``/``grp``; creates nothing itself: ``useradd_command``
is the command ``install-service`` runs (``--root`` for a target root).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

USER = "guardmail"
STATE_DIR = "/var/lib/guardmail"


@dataclass(frozen=True, slots=True, kw_only=True)
class Owner:
    """The uid and gid to give a file or directory."""

    uid: int
    gid: int


def ids(root: Path) -> tuple[int | None, int | None]:
    """uid of the user and gid of the group guardmail on the target system, where they exist."""
    if root != Path("/"):
        return id_from(root / "etc/passwd"), id_from(root / "etc/group")
    try:
        uid: int | None = pwd.getpwnam(USER).pw_uid
    except KeyError:
        uid = None
    try:
        gid: int | None = grp.getgrnam(USER).gr_gid
    except KeyError:
        gid = None
    return uid, gid


def lookup_owner(root: Path) -> Owner | None:
    uid, gid = ids(root)
    return Owner(uid=uid, gid=gid) if uid is not None and gid is not None else None


def id_from(table: Path) -> int | None:
    """The id (third field) of USER in a passwd or group file, if there."""
    try:
        lines = table.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == USER and fields[2].isdigit():
            return int(fields[2])
    return None


def useradd_command(root: Path) -> list[str]:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    useradd = shutil.which("useradd", path=path) or "useradd"
    group = ["--user-group"] if ids(root)[1] is None else ["--gid", USER]
    chroot = [] if root == Path("/") else ["--root", str(root)]
    return [
        useradd,
        "--system",
        *group,
        "--home-dir",
        STATE_DIR,
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "guardmail daemon",
        *chroot,
        USER,
    ]
