"""Tenant files (tenants.d): loading, errors placed at file:line:column, routing recipients to
tenants, and reloading that keeps the last good directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardmail.config.settings import Settings
from guardmail.config.tenants import Router, TenantConfig, load_tenants, recipient_key
from guardmail.daemon.tenant import Tenant, open_tenant
from guardmail.daemon.tenants import TenantDirectory
from guardmail.errors import ConfigError
from guardmail.storage.base import StorageClosed

ALICE = """\
name: alice
recipients: [alice@example.org, "@alice-family.example"]
offenders:
  - name: Ex
    addresses: [ex@example.net]
    action: block
quarantine_mailbox: alice-quarantine@example.org
"""
BOB = """\
name: bob
recipients: [Bob@Example.ORG]
offenders:
  - name: Other
    domains: [harass.example]
"""


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def issues_of(directory: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_tenants(directory, **kwargs)  # type: ignore[arg-type]
    return [str(i) for i in caught.value.issues]


def test_valid_files_load_in_name_order_and_others_are_ignored(tmp_path: Path) -> None:
    d = write(
        tmp_path / "t",
        {"b.yaml": BOB, "a.yml": ALICE, ".a.yaml.swp": "x: [", "notes.txt": "?", "x.yaml~": "?"},
    )
    loaded = load_tenants(d)
    assert [t.name for t in loaded.tenants] == ["alice", "bob"]
    assert loaded.files == (d / "a.yml", d / "b.yaml")
    alice = loaded.tenants[0]
    assert alice.quarantine_mailbox == "alice-quarantine@example.org"
    assert alice.offenders[0].action == "block"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: alice\nrecipients: [alice@example.org]\nquarantine: x@example.org\n",
            "a.yaml:3:1: quarantine: unknown key 'quarantine'; did you mean 'quarantine_mailbox'?",
        ),
        (
            "name: alice\nrecipients: [alice@example.org, alice]\n",
            "a.yaml:2:33: recipients.1: 'alice' is neither an address (alice@example.org) "
            "nor a whole domain written as '@example.org'",
        ),
        (
            "name: Alice Smith\nrecipients: [a@example.org]\n",
            "a.yaml:1:7: name: tenant 'Alice Smith' must be lower-case letters",
        ),
        ("recipients: [a@example.org]\n", "a.yaml:1:1: name: required key 'name' is missing"),
        ("name: alice\nrecipients: []\n", "a.yaml:2:13: recipients: "),
        (
            "name: alice\nrecipients: [a@example.org]\noffenders:\n  - name: X\n",
            "a.yaml:4:5: offenders.0: offender 'X' has no addresses",
        ),
        (
            "name: alice\nrecipients: [a@example.org]\noffenders:\n"
            "  - {name: X, addresses: [x@e.example]}\n  - {name: x, domains: [e.example]}\n",
            "a.yaml:5:12: offenders.1.name: offender 'x' is already defined at ",
        ),
        ("name: alice\nrecipients: [a@example.org\n", "a.yaml:3:1: (yaml): "),
        ("- alice\n", "a.yaml:1:1: (document): expected a mapping with keys such as 'name'"),
        (
            "name: alice\nrecipients: [a@example.org]\nquarantine_mailbox: nobody\n",
            "a.yaml:3:21: quarantine_mailbox: 'nobody' is not an e-mail address",
        ),
    ],
)
def test_a_wrong_file_is_reported_at_file_line_and_column(
    tmp_path: Path, text: str, expected: str
) -> None:
    d = write(tmp_path / "t", {"a.yaml": text})
    issues = issues_of(d)
    assert any(i.startswith(f"{d}/{expected}") for i in issues), issues


def test_every_issue_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    d = write(
        tmp_path / "t",
        {
            "a.yaml": "name: alice\nrecipients: [a@example.org]\nbogus: 1\n",
            "b.yaml": "name: bob\nrecipients: [b]\n",
        },
    )
    issues = issues_of(d)
    assert [i.split(": ")[0] for i in issues] == [f"{d}/a.yaml:3:1", f"{d}/b.yaml:2:14"]


def test_a_tenant_name_used_twice_is_an_error_at_the_second(tmp_path: Path) -> None:
    d = write(
        tmp_path / "t",
        {"a.yaml": ALICE, "b.yaml": "name: alice\nrecipients: [other@example.org]\n"},
    )
    assert issues_of(d) == [
        f"{d}/b.yaml:1:7: name: tenant 'alice' is already defined at {d}/a.yaml:1"
    ]


def test_a_recipient_in_two_tenants_is_an_error_whatever_its_spelling(tmp_path: Path) -> None:
    d = write(
        tmp_path / "t",
        {"a.yaml": ALICE, "b.yaml": "name: carol\nrecipients: [x@y.example, ALICE@example.ORG]\n"},
    )
    assert issues_of(d) == [
        f"{d}/b.yaml:2:27: recipients.1: recipient 'ALICE@example.ORG' is already routed at "
        f"{d}/a.yaml:2 (tenant 'alice')"
    ]


def test_the_main_configs_tenant_name_cannot_be_reused(tmp_path: Path) -> None:
    d = write(tmp_path / "t", {"a.yaml": "name: default\nrecipients: [a@example.org]\n"})
    assert issues_of(d, reserved={"default"}) == [
        f"{d}/a.yaml:1:7: name: tenant 'default' is the main config's own tenant; "
        "give this customer another name"
    ]


def test_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    issues = issues_of(tmp_path / "nowhere")
    assert issues == [
        f"{tmp_path}/nowhere:1:1: (directory): cannot read the tenants directory "
        f"{tmp_path}/nowhere: No such file or directory"
    ]


def test_an_empty_directory_has_no_tenants(tmp_path: Path) -> None:
    assert load_tenants(write(tmp_path / "t", {})).tenants == ()


def test_relative_warning_paths_resolve_against_the_start_directory(tmp_path: Path) -> None:
    text = ALICE + (
        "warning:\n  from: Alice <alice@example.org>\n  template_file: tpl/warning.j2\n"
        "  smtp: {host: 127.0.0.1, tls: none}\n"
    )
    d = write(tmp_path / "t", {"a.yaml": text})
    (alice,) = load_tenants(Path("t"), base=tmp_path).tenants
    assert alice.warning is not None
    assert alice.warning.template_file == tmp_path / "tpl" / "warning.j2"
    assert d.is_dir()


ROUTER = Router.build(
    [
        TenantConfig(name="alice", recipients=["alice@example.org", "@alice-family.example"]),
        TenantConfig(name="bob", recipients=["Bob@Example.ORG", "bob+work@example.org"]),
        TenantConfig(name="carol", recipients=["carol@bücher.example"]),
        TenantConfig(name="dan", recipients=["@example.org"]),
    ]
)


@pytest.mark.parametrize(
    ("recipient", "tenant"),
    [
        ("alice@example.org", "alice"),
        ("ALICE@EXAMPLE.ORG", "alice"),  # case, both parts
        ("alice@example.org.", "alice"),  # the root dot
        ("alice+news@example.org", "alice"),  # sub-address, as Postfix's recipient_delimiter
        ("bob@example.org", "bob"),  # configured in mixed case
        ("bob+work@example.org", "bob"),  # an exact entry with a tag
        ("bob+other@example.org", "bob"),
        ("anyone@alice-family.example", "alice"),  # @domain
        ("anyone@ALICE-FAMILY.example", "alice"),
        ("x@sub.alice-family.example", None),  # a domain does not cover its subdomains
        ("carol@xn--bcher-kva.example", "carol"),  # punycode and Unicode spellings are equal
        ("someone@example.org", "dan"),  # exact addresses beat the @domain of another tenant
        ("+alice@example.org", "dan"),  # a leading delimiter is no tag
        ("stranger@elsewhere.example", None),
        ("postmaster", None),
        ("", None),
    ],
)
def test_recipients_route_to_their_tenant(recipient: str, tenant: str | None) -> None:
    assert ROUTER.route(recipient) == tenant


def test_without_a_delimiter_tags_are_not_stripped() -> None:
    router = Router.build([TenantConfig(name="a", recipients=["a@x.example"])], delimiter="")
    assert router.route("a+b@x.example") is None
    several = Router.build([TenantConfig(name="a", recipients=["a@x.example"])], delimiter="+-")
    assert several.route("a-b@x.example") == "a"


def test_recipient_key_is_stable() -> None:
    assert recipient_key("A@B.Example.") == "a@b.example"
    assert recipient_key("@Sub.B.example") == "@sub.b.example"


def opener(opened: list[str]) -> object:
    def open_(settings: Settings) -> Tenant:
        opened.append(settings.tenant)
        return open_tenant(settings)

    return open_


def test_reload_applies_a_good_directory_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    d = write(tmp_path / "t", {"a.yaml": ALICE})
    opened: list[str] = []
    tenants = TenantDirectory(
        directory=d,
        state_dir=tmp_path / "var",
        opener=opener(opened),  # type: ignore[arg-type]
    )
    try:
        first = tenants.route("alice@example.org")
        assert first is not None and first.name == "alice"
        rules_before = first.tenant.pipeline.rules

        write(d, {"b.yaml": BOB, "a.yaml": ALICE.replace("action: block", "action: quarantine")})
        assert tenants.reload()
        again = tenants.route("alice@example.org")
        assert again is not None and again.tenant is first.tenant  # the same open tenant
        assert again.tenant.pipeline.rules is not rules_before  # with the new rules
        assert again.tenant.warner.settings.offenders[0].action == "quarantine"
        bob = tenants.route("bob@example.org")
        assert bob is not None and bob.tenant.vault.root == tmp_path / "var" / "vault" / "bob"
        assert opened == ["alice", "bob"]

        (d / "b.yaml").write_text("name: bob\nrecipients: [nope]\n")
        assert not tenants.reload()
        assert tenants.route("bob@example.org") is not None  # the last good directory stays

        (d / "b.yaml").unlink()
        assert tenants.reload()
        assert tenants.route("bob@example.org") is None
        assert tenants.names == ["alice"]
    finally:
        tenants.close()


def test_tenants_keep_their_evidence_apart(tmp_path: Path) -> None:
    d = write(tmp_path / "t", {"a.yaml": ALICE, "b.yaml": BOB})
    tenants = TenantDirectory(directory=d, state_dir=tmp_path / "var")
    try:
        alice = tenants.route("alice@example.org")
        bob = tenants.route("bob@example.org")
        assert alice is not None and bob is not None
        assert alice.tenant.vault.root != bob.tenant.vault.root
        assert alice.tenant.pipeline.rules is not bob.tenant.pipeline.rules
        assert [o.name for o in alice.tenant.warner.settings.offenders] == ["Ex"]
    finally:
        tenants.close()


def test_a_tenants_warning_cannot_go_over_xmpp(tmp_path: Path) -> None:
    text = ALICE + "warning:\n  channel: xmpp\n  template_file: tpl/warning.j2\n"
    d = write(tmp_path / "t", {"a.yaml": text})
    (issue,) = issues_of(d)
    assert issue.startswith(f"{d}/a.yaml:{ALICE.count(chr(10)) + 2}:12: warning.channel")
    assert "their warning goes by email" in issue


def test_a_500_deep_tenant_file_on_reload_is_logged_and_the_last_good_rules_stay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = write(tmp_path / "t", {"a.yaml": ALICE})
    tenants = TenantDirectory(directory=d, state_dir=tmp_path / "var")
    try:
        rules = tenants.route("alice@example.org")
        assert rules is not None
        (d / "a.yaml").write_text(ALICE + "offenders: " + "[" * 500 + "]" * 500 + "\n")
        assert not tenants.reload()
        rejected = [r for r in caplog.records if r.msg == "tenants.reload_rejected"]
        [issue] = [r.__dict__["gm_fields"]["issue"] for r in rejected]
        assert issue.startswith(f"{d}/a.yaml:{ALICE.count(chr(10)) + 1}:")
        again = tenants.route("alice@example.org")
        assert again is not None and again.tenant.pipeline.rules is rules.tenant.pipeline.rules
    finally:
        tenants.close()


def test_a_tenant_s_warning_may_not_use_oauth2(tmp_path: Path) -> None:
    text = BOB + (
        "warning:\n  from: bob@example.org\n  template_file: w.j2\n"
        "  smtp: {provider: outlook, username: bob@example.org, oauth2: {client_id: app}}\n"
    )
    issues = issues_of(write(tmp_path / "t", {"bob.yaml": text}))
    assert any("auth: oauth2 is for the main configuration" in i for i in issues), issues


def test_the_tenants_of_a_directory_share_one_database_connection(tmp_path: Path) -> None:
    # ~160 KB a connection: 1,000 tenants on their own cost 160 MB (bench/smtp_filter.py).
    d = write(tmp_path / "t", {"a.yaml": ALICE, "b.yaml": BOB})
    tenants = TenantDirectory(directory=d, state_dir=tmp_path / "var")
    alice, bob = tenants.route("alice@example.org"), tenants.route("bob@example.org")
    assert alice is not None and bob is not None
    assert alice.tenant.storage is bob.tenant.storage
    write(d, {"a.yaml": ALICE})  # bob retired: his tenant closes at exit, not the shared database
    assert tenants.reload()
    with alice.tenant.storage.read():
        pass
    tenants.close()
    with pytest.raises(StorageClosed):  # closed once, by the directory
        with alice.tenant.storage.read():
            pass
