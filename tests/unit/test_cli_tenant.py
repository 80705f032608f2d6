"""``guardmail --tenant NAME``: every command works on that tenant of tenants.d (its vault, its
offenders, its warning), or refuses the option with a usage error when it has no use for one."""

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.cli import main
from guardmail.config.tenants import load_tenants
from guardmail.core.item import mail_item
from guardmail.core.rules import decide
from guardmail.daemon.tenant import open_tenant
from guardmail.pipeline_evidence import evidence_metadata

CONFIG = """\
state_dir: {root}/var
offenders:
  - name: Main Ex
    addresses: [main-ex@example.net]
sources:
  smtp_filter:
    tenants_dir: {root}/tenants.d
"""

BOB = """\
name: bob
recipients: [bob@example.org]
offenders:
  - name: Bob Ex
    addresses: [ex@bob.example]
"""

ALICE = """\
name: alice
recipients: [alice@example.org]
offenders:
  - name: Alice Ex
    addresses: [ex@alice.example]
"""

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def message(sender: str, to: str = "bob@example.org") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: hi\r\nMessage-ID: <1@x>\r\n"
        "Date: Fri, 20 Nov 2026 09:30:00 +0000\r\n\r\nI see you\r\n"
    ).encode()


BOB_ITEM = message("Ex <ex@bob.example>")


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    """The main config, tenants bob and alice, and one item archived in bob's vault."""
    path = tmp_path / "guardmail.yaml"
    path.write_text(CONFIG.format(root=tmp_path))
    (tmp_path / "tenants.d").mkdir()
    (tmp_path / "tenants.d" / "bob.yaml").write_text(BOB)
    (tmp_path / "tenants.d" / "alice.yaml").write_text(ALICE)
    bob = next(t for t in load_tenants(tmp_path / "tenants.d").tenants if t.name == "bob")
    tenant = open_tenant(bob.settings(state_dir=tmp_path / "var"))
    try:
        item = mail_item(BOB_ITEM, tenant="bob", account="", source_ref="q1", received_at=NOW)
        verdict = decide(item.identities, tenant.pipeline.rules, now=NOW)
        tenant.vault.put(
            BOB_ITEM, source_ref="q1", metadata=evidence_metadata(item, verdict), now=NOW
        )
    finally:
        tenant.close()
    yield path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def gm(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run(capsys, "-c", str(config), *args)


# --- basic: explain, check-config -------------------------------------------------------------


def test_explain_with_a_tenant_judges_with_that_tenants_rules(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eml = config.parent / "m.eml"
    eml.write_bytes(BOB_ITEM)
    code, out, _ = gm(config, capsys, "--tenant", "bob", "explain", "--json", str(eml))
    assert code == 0 and json.loads(out)["offender"] == "Bob Ex"
    code, out, _ = gm(config, capsys, "explain", "--json", str(eml))  # main rules: not theirs
    assert code == 0 and json.loads(out)["offender"] is None
    eml.write_bytes(message("main-ex@example.net"))
    code, out, _ = gm(config, capsys, "--tenant", "alice", "explain", "--json", str(eml))
    assert code == 0 and json.loads(out)["action"] == "pass"


def test_check_config_with_a_tenant_checks_and_names_that_tenant(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = gm(config, capsys, "--tenant", "alice", "check-config")
    assert code == 0 and out.splitlines()[-1] == "tenant alice: OK (1 offenders)"
    code, _, err = gm(config, capsys, "--tenant", "carol", "check-config")
    assert code == 1 and "no tenant named 'carol'" in err and "(known: alice, bob)" in err


# --- evidence --------------------------------------------------------------------------------


def test_evidence_list_show_and_verify_read_that_tenants_vault(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = gm(config, capsys, "--tenant", "bob", "evidence", "list", "--json")
    assert code == 0 and [json.loads(line)["offender"] for line in out.splitlines()] == ["Bob Ex"]
    code, out, _ = gm(config, capsys, "evidence", "list", "--json")
    assert (code, out) == (0, "")  # the main tenant's vault is another one
    assert main(["-c", str(config), "--tenant", "bob", "evidence", "show", "1"]) == 0
    assert capsys.readouterr().out == BOB_ITEM.decode()
    code, out, _ = gm(config, capsys, "--tenant", "bob", "evidence", "verify")
    assert code == 0 and out.strip() == "vault bob: 2 entries intact"  # the item, its view


def test_evidence_export_and_abuse_report_know_only_that_tenants_offenders(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = config.parent / "case"
    code, _, err = gm(
        config,
        capsys,
        "--tenant",
        "alice",
        "evidence",
        "export",
        "--offender",
        "X",
        "--out",
        str(out_dir),
    )
    assert code == 2 and err.strip() == "guardmail: unknown offender 'X' (known: Alice Ex)"
    report = config.parent / "abuse.eml"
    code, _, err = gm(
        config, capsys, "--tenant", "alice", "evidence", "abuse-report", "--offender", "Main Ex",
        "--out", str(report),
    )  # fmt: skip
    assert code == 2 and "(known: Alice Ex)" in err and "Main Ex (" not in err
    code, out, _ = gm(
        config, capsys, "--tenant", "bob", "evidence", "export", "--offender", "Bob Ex",
        "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0 and "exported 1 items (Bob Ex)" in out


# --- status, warn ----------------------------------------------------------------------------


def test_status_with_a_tenant_reports_that_tenants_vault(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = gm(config, capsys, "--tenant", "bob", "status", "--json")
    assert code == 1  # no daemon runs
    assert json.loads(out)["vault"]["tenant"] == "bob" and json.loads(out)["vault"]["entries"] == 1
    code, out, _ = gm(config, capsys, "--tenant", "bob", "status")
    assert "vault bob: 1 entries, intact" in out


def test_warn_status_with_a_tenant_lists_that_tenants_offenders(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = gm(config, capsys, "--tenant", "bob", "warn", "--status")
    assert code == 0 and re.fullmatch(r"Bob Ex: not sent \[id o-[0-9a-f]{12}\]\n", out), out


# --- sieve -----------------------------------------------------------------------------------


def test_sieve_export_with_a_tenant_files_that_tenants_offenders(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = gm(config, capsys, "--tenant", "bob", "sieve", "export")
    assert code == 0 and "ex@bob.example" in out and "main-ex@example.net" not in out


# --- commands with no use for a tenant -------------------------------------------------------


REFUSING = [
    (["run"], "the daemon serves the main config's tenant and every tenant of tenants.d"),
    (["schema"], "the same for every tenant"),
    (["report", "--no-daemon"], "reports archive into the main config's vault"),
    (["native-host"], "reports archive into the main config's vault"),
    (["install-client", "neomutt"], "reports archive into the main config's vault"),
    (["install-service", "--dry-run", "--no-user"], "installs the one service"),
    (["evidence", "verify", "bundle.zip"], "a bundle is checked on its own"),
    (["sieve", "install", "--account", "a"], "--account names an IMAP account"),
]


@pytest.mark.parametrize(("args", "why"), REFUSING, ids=[" ".join(a) for a, _ in REFUSING])
def test_commands_with_no_use_for_a_tenant_refuse_it_with_exit_2(
    config: Path, capsys: pytest.CaptureFixture[str], args: list[str], why: str
) -> None:
    root = config.parent
    extra = ["--root", str(root / "sys")] if args[0] == "install-service" else []
    code, out, err = gm(config, capsys, "--tenant", "bob", *args, *extra)
    assert code == 2 and out == ""
    assert err.startswith("guardmail: --tenant bob does not apply here: ") and why in err
    assert not (root / "offenders.d").exists() and not (root / "sys").exists()
    assert sorted(p.name for p in (root / "var" / "vault").iterdir()) == ["bob"]
