"""A reload re-judges the mail already in the watched folders only when the offenders changed:
re-reading every folder's headers is not free (a few seconds on 20,000 IMAP messages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardmail.channels.maildir import MaildirSource
from guardmail.config.settings import load_config
from guardmail.daemon.supervisor import Daemon

CONFIG = """\
state_dir: {root}/var
log_level: {level}
offenders:
  - name: Ex
    addresses: [{address}]
sources:
  maildir:
    - path: {root}/Maildir
      create: true
"""


def test_only_a_change_of_offenders_rejudges_existing_mail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "guardmail.yaml"
    path.write_text(CONFIG.format(root=tmp_path, level="info", address="ex@example.net"))
    daemon = Daemon(load_config(path))
    try:
        calls: list[str] = []
        for source in daemon.sources:
            assert isinstance(source, MaildirSource)
            monkeypatch.setattr(source, "rejudge", lambda: calls.append("rejudge"))
        path.write_text(CONFIG.format(root=tmp_path, level="debug", address="ex@example.net"))
        assert daemon.reload() and calls == []
        path.write_text(CONFIG.format(root=tmp_path, level="debug", address="new@example.net"))
        assert daemon.reload() and calls == ["rejudge"]
    finally:
        daemon.tenant.close()
