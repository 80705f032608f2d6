"""Who the one mail warning may go to: an address the offender wrote from, never one they only
showed the reader (a display name or encoded word claiming someone else's address)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from guardmail.config.settings import load_config
from guardmail.core.item import mail_item
from guardmail.core.rules import decide
from guardmail.daemon.tenant import open_tenant
from guardmail.pipeline_evidence import evidence_metadata

CONFIG = """\
state_dir: var
offenders:
  - name: Ex
    addresses: [ex@example.net]
    domains: [burner.example, whitehouse.example]
    action: quarantine
warning:
  from: Jane <jane@example.org>
  template_file: warning.txt
  smtp: {host: 127.0.0.1, tls: none}
"""


def test_mail_warning_goes_to_addresses_written_from_never_to_one_in_a_display_name(
    tmp_path: Path,
) -> None:
    (tmp_path / "guardmail.yaml").write_text(CONFIG)
    (tmp_path / "warning.txt").write_text("{{ offender }}, stop.\n")
    settings = load_config("guardmail.yaml", cwd=tmp_path).settings
    tenant = open_tenant(settings)
    try:
        raw = (
            b'From: "potus@whitehouse.example" <ex2@burner.example>\r\n'
            b"Reply-To: =?utf-8?b?YWlkZUB3aGl0ZWhvdXNlLmV4YW1wbGU=?=\r\n\r\nhi\r\n"
        )
        now = datetime(2026, 11, 25, tzinfo=UTC)
        item = mail_item(raw, tenant="default", account="m", source_ref="new/1", received_at=now)
        verdict = decide(item.identities, tenant.pipeline.rules, now=now)
        assert {m.header for m in verdict.matches} == {
            "From",
            "From (display name)",
            "Reply-To (encoded word)",
        }
        tenant.vault.put(
            raw, source_ref=item.source_ref, metadata=evidence_metadata(item, verdict), now=now
        )
        ex = tenant.warner.offender("Ex")
        assert tenant.warner.recipients(ex) == ["ex@example.net", "ex2@burner.example"]
    finally:
        tenant.close()
