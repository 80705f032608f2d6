"""The XMPP form of the warning: the stanza's bytes, the config's channel rules, who it goes to,
and which offenders stay out of the server blocklist until it is sent."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardmail.channels.xmpp import blocklist
from guardmail.channels.xmpp.send import covering
from guardmail.config.settings import load_config
from guardmail.core.item import Channel, Identity, Item, Summary
from guardmail.core.rules import Action, OffenderRule, RuleSet
from guardmail.core.warning import UnsafeValue, render_xmpp_warning
from guardmail.daemon.tenant import open_tenant
from guardmail.errors import ConfigError
from guardmail.storage.base import WarningRow

TEMPLATE = "{{ offender }},\n\nStop contacting me. <{{ law }}> & that's final.\n\n{{ victim }}\n"


def stanza(**over: str) -> bytes:
    values = {"offender": "Ex", "victim": "Jane", "date": "2026-11-25", "law": "§238 StGB"}
    values.update({k: v for k, v in over.items() if k in values})
    return render_xmpp_warning(
        template=over.get("template", TEMPLATE),
        values=values,
        sender="jane@example.org",
        recipient=over.get("recipient", "ex@example.net"),
        date="2026-11-25T12:00:00+00:00",
        stanza_id="guardmail-warning-1",
    ).raw


def test_the_stanza_is_deterministic_escaped_and_parses_back() -> None:
    raw = stanza()
    assert raw == stanza()
    assert raw.startswith(b'<message xmlns="jabber:client" to="ex@example.net" type="chat"')
    msg = ET.fromstring(raw)
    assert msg.tag == "{jabber:client}message" and msg.get("id") == "guardmail-warning-1"
    body = msg.findtext("{jabber:client}body")
    assert body == "Ex,\n\nStop contacting me. <§238 StGB> & that's final.\n\nJane\n"
    assert b"&lt;\xc2\xa7238 StGB&gt; &amp;" in raw
    origin = msg.find("{urn:xmpp:sid:0}origin-id")
    assert origin is not None and origin.get("id") == "guardmail-warning-1"


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"offender": "Ex\nname"}, "line break or NUL"),
        ({"recipient": "ex@example.net\r\n"}, "line break or NUL"),
        ({"template": "stop \x07 now"}, "XML cannot carry"),
        ({"template": "stop \ufffe now"}, "XML cannot carry"),
    ],
    ids=["name-lf", "recipient-crlf", "bell", "non-character"],
)
def test_what_xml_or_a_header_cannot_carry_is_refused(over: dict[str, str], why: str) -> None:
    with pytest.raises(UnsafeValue, match=why):
        stanza(**over)


def config(tmp: Path, warning: str, *, accounts: tuple[str, ...] = ("phone",)) -> Path:
    (tmp / "pw").write_text("secret\n")
    (tmp / "warning.txt").write_text(TEMPLATE)
    xmpp = "".join(
        f"""\
    - name: {name}
      jid: jane@example.org
      password_file: pw
      server_block: true
"""
        for name in accounts
    )
    path = tmp / "guardmail.yaml"
    path.write_text(
        f"""\
state_dir: var
offenders:
  - name: Ex
    jids: [ex@example.net, "*@burner.example"]
    domains: [harass.example]
    action: block
  - name: Other
    addresses: [other@example.net]
    action: block
sources:
  xmpp:
{xmpp or "    []"}
warning:
  template_file: warning.txt
{warning}"""
    )
    return path


def issues(tmp: Path, warning: str, **kw: tuple[str, ...]) -> list[str]:
    path = config(tmp, warning, **kw)
    with pytest.raises(ConfigError) as caught:
        load_config(path.name, cwd=tmp)
    return [str(i) for i in caught.value.issues]


def test_channel_xmpp_needs_no_smtp_and_takes_the_only_account(tmp_path: Path) -> None:
    loaded = load_config(config(tmp_path, "  channel: xmpp\n").name, cwd=tmp_path)
    assert loaded.settings.warning is not None
    assert loaded.settings.warning.xmpp_account == "phone"


def test_channel_rules_are_errors_with_file_and_line(tmp_path: Path) -> None:
    (found,) = issues(tmp_path, "  channel: xmpp\n  xmpp_account: laptop\n")
    assert found.startswith("guardmail.yaml:20:")
    assert "warning.xmpp_account" in found and "no XMPP account named 'laptop'" in found
    (found,) = issues(tmp_path, "  channel: xmpp\n", accounts=("a", "b"))
    assert "warning.channel" in found and "name one in xmpp_account (a, b)" in found
    (found,) = issues(tmp_path, "  channel: xmpp\n", accounts=())
    assert "there is none" in found
    (found,) = issues(tmp_path, "  channel: email\n")
    assert "channel: email needs `from` and `smtp`" in found
    smtp = "  smtp: {host: 127.0.0.1, tls: none}\n"
    (found,) = issues(tmp_path, "  channel: xmpp\n" + smtp)
    assert "leave `smtp` out" in found


def test_blocklist_entries_that_cover_a_recipient() -> None:
    entries = {"ex@example.net", "example.net/bot", "harass.example", "friend@example.net/x"}
    assert covering(entries, "Ex@Example.net/phone") == {"ex@example.net", "example.net/bot"}
    assert covering(entries, "someone@harass.example") == {"harass.example"}
    assert covering(entries, "friend@elsewhere.example") == set()


def test_held_offenders_are_left_out_of_the_wanted_blocklist() -> None:
    rules = RuleSet(
        [
            OffenderRule(name="Ex", jids=("ex@example.net",), action=Action.BLOCK),
            OffenderRule(name="Two", domains=("two.example",), action=Action.BLOCK),
        ]
    )
    assert blocklist.wanted(rules) == {"ex@example.net", "two.example"}
    assert blocklist.wanted(rules, held={"ex"}) == {"two.example"}


def xmpp_item(sender: str, *, muc_pm: bool = False) -> Item:
    meta = {"via": "message", "from": sender}
    if muc_pm:
        meta["muc_pm"] = "true"
    return Item(
        raw=f"<message from='{sender}' type='chat'><body>hi</body></message>".encode(),
        channel=Channel.XMPP,
        tenant="default",
        account="phone",
        source_ref=f"xmpp:phone:{sender}",
        received_at=datetime(2026, 11, 25, tzinfo=UTC),
        identities=(Identity(source="jid", address=sender),),
        summary=Summary(subject="hi"),
        meta=tuple(meta.items()),
    )


def test_recipients_are_bare_jids_listed_or_written_from_never_globs_or_rooms(
    tmp_path: Path,
) -> None:
    loaded = load_config(config(tmp_path, "  channel: xmpp\n").name, cwd=tmp_path)
    tenant = open_tenant(loaded.settings)
    try:
        for sender, muc in (
            ("ex2@burner.example/laptop", False),
            ("room@muc.example.net/Ex", True),
        ):
            item = xmpp_item(sender, muc_pm=muc)
            tenant.vault.put(
                item.raw,
                source_ref=item.source_ref,
                metadata={
                    "channel": "xmpp",
                    "offender": "Ex",
                    "meta": dict(item.meta),
                    "matches": [],
                },
                now=item.received_at,
            )
        ex = tenant.warner.offender("ex")
        assert tenant.warner.recipients(ex) == ["ex@example.net", "ex2@burner.example"]
    finally:
        tenant.close()


def test_the_person_s_own_messages_and_room_messages_give_no_warning_recipient(
    tmp_path: Path,
) -> None:
    loaded = load_config(config(tmp_path, "  channel: xmpp\n").name, cwd=tmp_path)
    tenant = open_tenant(loaded.settings)
    try:
        for sender, extra in (
            ("victim@home.example/phone", {"direction": "outgoing"}),  # the person's sent carbon
            ("den@conference.example/Ex", {"muc": {"room": "den@conference.example"}}),
        ):
            item = xmpp_item(sender)
            tenant.vault.put(
                item.raw,
                source_ref=item.source_ref,
                metadata={
                    "channel": "xmpp",
                    "offender": "Ex",
                    "meta": dict(item.meta),
                    "matches": [],
                }
                | extra,
                now=item.received_at,
            )
        assert tenant.warner.recipients(tenant.warner.offender("ex")) == ["ex@example.net"]
    finally:
        tenant.close()


def test_offenders_owed_an_xmpp_warning_on_first_block_are_held_until_the_ledger_has_them(
    tmp_path: Path,
) -> None:
    for send, held in (("manual", set()), ("on_first_block", {"ex", "other"})):
        path = config(tmp_path, f"  channel: xmpp\n  send: {send}\n")
        tenant = open_tenant(load_config(path.name, cwd=tmp_path).settings)
        try:
            assert tenant.warner.held_server_blocks() == held
        finally:
            tenant.close()
    tenant = open_tenant(load_config(path.name, cwd=tmp_path).settings)
    try:
        key = tenant.warner.offender_id("ex")  # the ledger goes by the offender's id
        with tenant.storage.transaction() as tx:
            tx.put_warning(
                WarningRow(
                    tenant="default",
                    offender=key,
                    state="failed",
                    recipient="ex@example.net",
                    message_id="guardmail-warning-1",
                    sha256="0" * 64,
                    started_at="2026-11-25T12:00:00+00:00",
                )
            )
        assert tenant.warner.held_server_blocks() == {"other"}
    finally:
        tenant.close()
