"""What an ISP's tenants share in memory: equal, frozen default sub-settings (one instance for
all), never their own data; a reload that changes one tenant's file leaves the others' as they
were. An alias linker left off builds its index only when asked (issue 27)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardmail.config.aliases import AliasesConfig
from guardmail.core.aliases import AliasIndex
from guardmail.daemon.tenants import Routed, TenantDirectory

ALICE = (
    "name: alice\nrecipients: [alice@example.org]\n"
    "offenders:\n  - {name: Ex, addresses: [ex@example.net]}\n"
)
BOB = "name: bob\nrecipients: [bob@example.org]\noffenders:\n  - {name: O, domains: [x.example]}\n"
ALIASES_ON = "aliases: {enabled: true, review_threshold: 0.9}\n"


def routed(tenants: TenantDirectory, address: str) -> Routed:
    found = tenants.route(address)
    assert found is not None
    return found


def test_equal_default_sub_settings_are_one_object_and_own_data_is_not(tmp_path: Path) -> None:
    d = tmp_path / "t"
    d.mkdir()
    (d / "a.yaml").write_text(ALICE)
    (d / "b.yaml").write_text(BOB)
    tenants = TenantDirectory(directory=d, state_dir=tmp_path / "var")
    try:
        alice, bob = routed(tenants, "alice@example.org"), routed(tenants, "bob@example.org")
        a, b = alice.tenant.warner.settings, bob.tenant.warner.settings
        for part in ("sources", "case", "impersonation", "evidence", "aliases"):
            assert getattr(a, part) is getattr(b, part), part
        ra, rb = alice.tenant.pipeline.receipts, bob.tenant.pipeline.receipts
        assert ra is not None and rb is not None and ra is not rb
        assert ra.resolver is rb.resolver and ra.limits is rb.limits
        assert ra.tenant == "alice" and rb.tenant == "bob"
        assert a.offenders is not b.offenders
        assert [o.name for o in a.offenders] == ["Ex"] and [o.name for o in b.offenders] == ["O"]
        assert alice.tenant.pipeline.rules is not bob.tenant.pipeline.rules
    finally:
        tenants.close()


def test_a_reload_changing_one_tenant_leaves_the_others_shared_settings_alone(
    tmp_path: Path,
) -> None:
    d = tmp_path / "t"
    d.mkdir()
    (d / "a.yaml").write_text(ALICE)
    (d / "b.yaml").write_text(BOB)
    tenants = TenantDirectory(directory=d, state_dir=tmp_path / "var")
    try:
        bob_before = routed(tenants, "bob@example.org").tenant.warner.settings.aliases
        (d / "a.yaml").write_text(ALICE + ALIASES_ON)
        assert tenants.reload()
        alice, bob = routed(tenants, "alice@example.org"), routed(tenants, "bob@example.org")
        assert alice.tenant.warner.settings.aliases.enabled
        assert alice.tenant.linker.config.review_threshold == 0.9
        assert bob.tenant.warner.settings.aliases is bob_before
        assert bob.tenant.warner.settings.aliases == AliasesConfig()
        assert not bob.tenant.linker.config.enabled

        (d / "a.yaml").write_text(ALICE + "aliases: [not, a, mapping]\n")
        assert not tenants.reload()  # a bad file: alice keeps her last good settings
        assert routed(tenants, "alice@example.org").tenant.linker.config.enabled
    finally:
        tenants.close()


def test_a_linker_left_off_builds_its_index_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []
    original = AliasIndex.build

    def counted(*args: object, **kwargs: object) -> AliasIndex:
        built.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(AliasIndex, "build", counted)
    d = tmp_path / "t"
    d.mkdir()
    (d / "a.yaml").write_text(ALICE)
    (d / "b.yaml").write_text(BOB + ALIASES_ON)
    tenants = TenantDirectory(directory=d, state_dir=tmp_path / "var")
    try:
        assert len(built) == 1  # bob's, whose linker is on
        alice = routed(tenants, "alice@example.org").tenant.linker
        assert "Ex" in alice.index.offenders  # built now, from alice's offenders
        assert len(built) == 2
        assert alice.index is alice.index
        (d / "a.yaml").write_text(ALICE + ALIASES_ON)
        assert tenants.reload()
        assert len(built) == 3  # turned on: built at the reload, before it is used
    finally:
        tenants.close()
