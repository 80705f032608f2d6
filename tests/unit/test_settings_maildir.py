"""A Maildir source must name a Maildir when the config loads, unless it says ``create: true``."""

from pathlib import Path

import pytest

from guardmail.config.settings import load_config
from guardmail.errors import ConfigError

MAIN = "guardmail.yaml"


def config(root: Path, entry: str) -> None:
    (root / MAIN).write_text(f"sources:\n  maildir:\n    - path: {entry}\n", encoding="utf-8")


def refused(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(MAIN, cwd=root)
    return [str(issue) for issue in caught.value.issues]


def make_maildir(path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True)


def test_misspelt_maildir_path_is_refused_with_file_line_column_and_key(tmp_path: Path) -> None:
    make_maildir(tmp_path / "Maildir")
    config(tmp_path, "./Mialdir")
    assert refused(tmp_path) == [
        f"guardmail.yaml:3:13: sources.maildir.0.path: Maildir {tmp_path}/Mialdir does not "
        "exist; correct the path, or add 'create: true' to this entry to have guardmail "
        "create it"
    ]
    assert not (tmp_path / "Mialdir").exists()


def test_directory_without_cur_new_tmp_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mail" / "new").mkdir(parents=True)
    config(tmp_path, "mail")
    [issue] = refused(tmp_path)
    assert issue.startswith("guardmail.yaml:3:13: sources.maildir.0.path: ")
    assert "is not a Maildir (no cur/, tmp/)" in issue


def test_maildir_path_that_is_a_file_is_refused_even_with_create(tmp_path: Path) -> None:
    (tmp_path / "mbox").write_text("From someone\n")
    config(tmp_path, "mbox\n      create: true")
    assert refused(tmp_path) == [
        f"guardmail.yaml:3:13: sources.maildir.0.path: {tmp_path}/mbox is a file, "
        "not a Maildir directory"
    ]


def test_existing_maildir_is_accepted(tmp_path: Path) -> None:
    make_maildir(tmp_path / "Maildir")
    config(tmp_path, "Maildir")
    loaded = load_config(MAIN, cwd=tmp_path)
    [maildir] = loaded.settings.sources.maildir
    assert (maildir.path, maildir.create) == (tmp_path / "Maildir", False)


def test_missing_maildir_with_create_true_is_accepted_and_not_created_at_load(
    tmp_path: Path,
) -> None:
    config(tmp_path, "var/Maildir\n      create: true")
    loaded = load_config(MAIN, cwd=tmp_path)
    assert loaded.settings.sources.maildir[0].create is True
    assert not (tmp_path / "var").exists()  # the daemon creates it when it starts watching


def test_every_bad_maildir_is_reported_at_its_own_entry(tmp_path: Path) -> None:
    (tmp_path / MAIN).write_text(
        "sources:\n  maildir:\n    - path: a\n    - path: b\n      create: true\n    - path: c\n",
        encoding="utf-8",
    )
    assert [i.split(": ", 2)[:2] for i in refused(tmp_path)] == [
        ["guardmail.yaml:3:13", "sources.maildir.0.path"],
        ["guardmail.yaml:6:13", "sources.maildir.2.path"],
    ]


def test_maildir_path_that_cannot_be_examined_says_why_rather_than_missing(
    tmp_path: Path,
) -> None:
    config(tmp_path, "x" * 300)  # too long a name for stat(): an error other than "not there"
    [issue] = refused(tmp_path)
    assert issue.startswith("guardmail.yaml:3:13: sources.maildir.0.path: Maildir ")
    assert issue.endswith(" cannot be examined by this user: File name too long")
