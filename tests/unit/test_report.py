"""Reporting by hand: the item goes through the pipeline into the vault, the sender into
offenders.d/reported.yaml, and the user's own config is never touched."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.config.settings import OffenderConfig, load_config
from guardmail.control.offenders import (
    BadReport,
    ReportedFile,
    load_hint,
    loads_reported,
    plan,
    reported_path,
)
from guardmail.control.report import RESERIALISED, Reported, ReportRequest, file_report
from guardmail.core.item import Channel
from guardmail.core.rules import Action
from guardmail.daemon.tenant import Tenant, open_tenant
from guardmail.vault import journal

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONFIG = """\
# hand-written, with a comment that must survive
state_dir: ./var
offenders:
  - name: Known
    addresses: [known@example.net]
    action: block
{extra}"""
LOADS = 'offenders_files: ["offenders.d/*.yaml"]\n'
MAIL = b"From: Stalker <stalker@evil.example>\r\nSubject: hi\r\n\r\nbody\r\n"


def request(raw: bytes = MAIL, **kw: object) -> ReportRequest:
    fields: dict[str, object] = {"raw": raw, "user": "victim", "uid": 1000, "client": "test"}
    fields.update(kw)
    return ReportRequest(**fields)  # type: ignore[arg-type]


class Setup:
    def __init__(self, root: Path, extra: str) -> None:
        self.root = root
        self.config = root / "guardmail.yaml"
        self.config.write_text(CONFIG.format(extra=extra))
        self.text = self.config.read_text()

    def report(self, req: ReportRequest) -> Reported:
        loaded = load_config(self.config, cwd=self.root)
        tenant: Tenant = open_tenant(loaded.settings)
        try:
            return asyncio.run(file_report(req, config=loaded, tenant=tenant, now=NOW))
        finally:
            tenant.close()

    def entries(self) -> list[dict[str, object]]:
        loaded = load_config(self.config, cwd=self.root)
        tenant = open_tenant(loaded.settings)
        try:
            return [journal.entry(r) for r in tenant.vault.rows(kind="archived")]
        finally:
            tenant.close()

    def reported(self) -> list[OffenderConfig]:
        return ReportedFile(reported_path(self.config)).read()


@pytest.fixture
def loads(tmp_path: Path) -> Iterator[Setup]:
    yield Setup(tmp_path, LOADS)


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Setup]:
    yield Setup(tmp_path, "")


def test_report_archives_exact_bytes_and_adds_the_from_address(loads: Setup) -> None:
    result = loads.report(request())
    assert (result.seq, result.duplicate, result.offender) == (1, False, "stalker@evil.example")
    added = "addresses: stalker@evil.example (new offender 'stalker@evil.example')"
    assert result.rule_added == added
    assert result.file_loaded and result.hint is None
    assert [(o.name, o.addresses, o.action) for o in loads.reported()] == [
        ("stalker@evil.example", ["stalker@evil.example"], "quarantine")
    ]
    (entry,) = loads.entries()
    assert entry["meta"] == {
        "arrived": "reported",
        "client": "test",
        "local_user": "victim",
        "local_uid": "1000",
        "via": "in-process",
        "fidelity": "exact",
    }
    blob = loads.root / "var" / "vault" / "default" / "blobs" / result.sha256[:2] / result.sha256
    assert blob.read_bytes() == MAIL
    assert loads.config.read_text() == loads.text  # the hand-written config is untouched
    # The configuration still loads, and now blocks the sender itself.
    names = [o.name for o in load_config(loads.config, cwd=loads.root).settings.offenders]
    assert names == ["Known", "stalker@evil.example"]


def test_the_same_bytes_reported_twice_archive_once(loads: Setup) -> None:
    first = loads.report(request(client="neomutt"))
    second = loads.report(request(client="thunderbird"))
    assert second.duplicate and second.seq == first.seq and second.sha256 == first.sha256
    assert second.rule_added is None and second.covered_by == "stalker@evil.example"
    assert len(loads.entries()) == 1
    assert len(loads.reported()) == 1


def test_alias_of_a_reported_offender_extends_its_entry(loads: Setup) -> None:
    loads.report(request(new_offender="Ex"))
    result = loads.report(request(b"From: ex2@other.example\n\nagain\n", offender="ex"))
    assert result.offender == "Ex"
    assert result.rule_added == "addresses: ex2@other.example (offender 'Ex')"
    assert [(o.name, o.addresses) for o in loads.reported()] == [
        ("Ex", ["stalker@evil.example", "ex2@other.example"])
    ]


def test_alias_of_a_hand_written_offender_goes_to_its_reported_entry(loads: Setup) -> None:
    result = loads.report(request(offender="Known", action=Action.QUARANTINE))
    # Names are unique across files: the alias entry is "Known (reported)", with Known's action.
    assert result.offender == "Known (reported)"
    assert [(o.name, o.action) for o in loads.reported()] == [("Known (reported)", "block")]
    assert loads.config.read_text() == loads.text


def test_a_sender_already_covered_adds_nothing(loads: Setup) -> None:
    result = loads.report(request(b"From: Known <KNOWN@example.net>\n\nx\n", offender="Known"))
    assert (result.offender, result.rule_added, result.covered_by) == ("Known", None, "Known")
    assert not reported_path(loads.config).exists()


@pytest.mark.parametrize(
    ("raw", "kw", "message"),
    [
        (b"", {}, "the item is empty"),
        (b"Subject: no sender\n\nx\n", {}, "no From address"),
        (MAIL, {"offender": "Nobody"}, "no offender is named 'Nobody'"),
        (MAIL, {"new_offender": "known"}, "offender 'known' already exists"),
        (b"From: not-an-address\n\nx\n", {}, "no From address"),
        (b"<message from='a@b'>", {"channel": Channel.XMPP}, "not one well-formed stanza"),
        (b"<iq from='a@b' type='get'/>", {"channel": Channel.XMPP}, "not a message"),
    ],
)
def test_bad_reports_are_refused_and_change_nothing(
    loads: Setup, raw: bytes, kw: dict[str, object], message: str
) -> None:
    with pytest.raises(BadReport, match=message):
        loads.report(request(raw, **kw))
    assert loads.entries() == []
    assert not reported_path(loads.config).exists()


def test_xmpp_report_adds_the_bare_jid(loads: Setup) -> None:
    stanza = (
        b'<message xmlns="jabber:client" from="stalker@chat.example/phone" to="victim@chat.example"'
        b' type="chat" id="m1"><body>you cannot hide</body>'
        b'<stanza-id xmlns="urn:xmpp:sid:0" by="victim@chat.example" id="S1"/></message>'
    )
    result = loads.report(
        request(
            stanza,
            channel=Channel.XMPP,
            account="victim@chat.example",
            fidelity=RESERIALISED,
            client="gajim",
        )
    )
    assert result.rule_added == "jids: stalker@chat.example (new offender 'stalker@chat.example')"
    (entry,) = loads.entries()
    assert entry["channel"] == "xmpp" and entry["subject"] == "you cannot hide"
    assert entry["meta"]["fidelity"] == RESERIALISED  # type: ignore[index]
    assert entry["meta"]["stanza_id"] == "S1"  # type: ignore[index]
    # Wire text without its stream's namespace declaration is read too.
    wire = b"<message from='other@chat.example/x' type='chat'><body>again</body></message>"
    again = loads.report(request(wire, channel=Channel.XMPP, offender="stalker@chat.example"))
    assert again.rule_added == "jids: other@chat.example (offender 'stalker@chat.example')"


def test_a_config_that_leaves_out_offenders_files_loads_what_reports_write(bare: Setup) -> None:
    result = bare.report(request())
    assert result.file_loaded and result.hint is None
    loaded = load_config(bare.config, cwd=bare.root)
    assert [o.name for o in loaded.settings.offenders] == ["Known", "stalker@evil.example"]
    assert reported_path(bare.config) in loaded.files  # watched for hot reload


def test_a_config_whose_offenders_files_leave_out_the_reported_file_gets_an_exact_hint(
    tmp_path: Path,
) -> None:
    bare = Setup(tmp_path, "offenders_files: []\n")
    result = bare.report(request())
    expected = f'"{bare.root}/offenders.d/*.yaml"'
    assert not result.file_loaded
    assert result.hint == (
        f"write offenders_files: [{expected}] in {bare.config}, "
        f"or leave offenders_files out (it then loads {expected})"
    )
    # A second report still sees what the first added, though the config does not load it.
    again = bare.report(request(b"From: stalker@evil.example\n\nmore\n"))
    assert again.rule_added is None and again.offender == "stalker@evil.example"
    # With offenders_files present but not covering it, the hint says to add to that list.
    other = bare.root / "mine.yaml"
    other.write_text("offenders: []\n")
    bare.config.write_text(bare.text.replace("[]", "[mine.yaml]"))
    loaded = load_config(bare.config, cwd=bare.root)
    path = reported_path(loaded.path)
    assert not loads_reported(loaded, path)
    assert load_hint(loaded, path) == (
        f'add "{bare.root}/offenders.d/*.yaml" to the offenders_files list in {bare.config}'
    )


def test_plan_refuses_a_sender_that_cannot_be_a_rule() -> None:
    with pytest.raises(BadReport, match="is not an e-mail address"):
        plan(
            hand_written=[],
            reported=[],
            key="addresses",
            value="nodomain@",
            offender=None,
            new_offender="X",
            action="quarantine",
        )


def test_a_client_copy_of_a_stanza_is_linked_to_the_wire_copy(loads: Setup) -> None:
    wire = (
        b"<message from='stalker@chat.example/x' to='victim@chat.example' type='chat'>"
        b"<body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='victim@chat.example' id='S9'/>"
        b"</message>"
    )
    loaded = load_config(loads.config, cwd=loads.root)
    tenant = open_tenant(loaded.settings)
    try:  # as the daemon's XMPP watcher archives it
        receipt = tenant.vault.put(
            wire,
            source_ref="xmpp:victim:S9",
            metadata={"channel": "xmpp", "meta": {"stanza_id": "S9", "via": "message"}},
            now=NOW,
        )
    finally:
        tenant.close()
    client_copy = wire.replace(b"'", b'"').replace(b"<message ", b'<message xmlns="jabber:client" ')
    result = loads.report(
        request(
            client_copy,
            channel=Channel.XMPP,
            account="victim@chat.example",
            fidelity=RESERIALISED,
        )
    )
    entries = loads.entries()
    reported = next(e for e in entries if e["sha256"] == result.sha256)
    assert reported["meta"]["wire_copy_seq"] == str(receipt.seq)  # type: ignore[index]
