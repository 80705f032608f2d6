"""Hostile stanzas through a real Prosody to the real daemon: it stays up, every one of the
offender's stanzas is archived with the exact bytes the server sent, and a friend's message
after them is still left alone (issue 21, "hostile input, systematically", the XMPP part).

The offender controls everything inside their stanzas that the server passes on: nesting,
sizes, Unicode, prefixes and entity spellings, and elements that imitate the wrappers only the
account's own server may send (carbons, archive results).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.test_xmpp_prosody import (
    USERS,
    VICTIM,
    Daemon,
    Tap,
    archived,
    blob,
    config_text,
    meta,
    peer,
    start,
)
from tests.servers.prosody import DOMAIN, Peer, Prosody, start_prosody

pytestmark = pytest.mark.integration

FORWARD = "xmlns='urn:xmpp:forward:0'"
HOSTILE = [
    # deep nesting of unknown elements (Prosody 0.12 drops a message nested ~200 deep: it
    # cannot store it, and delivers it to no one; 100 passes)
    "<body>deep</body>" + "<a xmlns='urn:x:deep'>" * 100 + "</a>" * 100,
    # a 200 KB body and a 20 KB attribute
    "<body>" + "A" * 200_000 + "</body>",
    "<body>attr</body><x xmlns='urn:x:attr' v='" + "v" * 20_000 + "'/>",
    # bidi overrides, zero-width joiners, astral and combining characters, numeric references
    "<body>\u202egnp.exe \u200d\u200b &#x1F600;&#128512; e\u0301\u0301\u0301 \U0001d54f</body>",
    # entity spellings and CDATA that looks like markup
    "<body>&amp;lt;script&amp;gt; &lt;![CDATA[ ]]&gt; <![CDATA[</body><body>]]></body>",
    # a prefixed body in the client namespace, and a thread and subject full of newlines
    "<c:body xmlns:c='jabber:client'>prefixed</c:body><subject>a\nb\r\nc</subject>",
    # a fake carbon: someone else's message wrapped as if the account's server forwarded it
    f"<received xmlns='urn:xmpp:carbons:2'><forwarded {FORWARD}><message xmlns='jabber:client'"
    f" from='friend@{DOMAIN}/x' to='{VICTIM}' type='chat'><body>not me</body></message>"
    "</forwarded></received>",
    # a fake archive result
    f"<result xmlns='urn:xmpp:mam:2' id='fake'><forwarded {FORWARD}><message "
    f"xmlns='jabber:client' from='friend@{DOMAIN}/x' type='chat'><body>old</body></message>"
    "</forwarded></result>",
    # a 10 KB nickname and 50 forged stanza-ids (Prosody passes them on and appends its own)
    "<body>nick</body><nick xmlns='http://jabber.org/protocol/nick'>"
    + "N" * 10_000
    + "</nick>"
    + "".join(f"<stanza-id xmlns='urn:xmpp:sid:0' by='{VICTIM}' id='s{i}'/>" for i in range(50)),
]


@pytest.fixture
def prosody() -> Iterator[Prosody]:
    server = start_prosody(USERS)
    yield server
    server.stop()


def test_hostile_stanzas_are_archived_byte_exact_and_the_daemon_stays_up(
    prosody: Prosody, tmp_path: Path
) -> None:
    peers: list[Peer] = []
    daemons: list[Daemon] = []
    tap = Tap(prosody.port)
    try:
        (tmp_path / "guardmail.yaml").write_text(
            config_text(tmp_path, prosody, port=tap.port, tls="none")
        )
        peer(prosody, peers, "victim", resource="phone", priority=5)
        daemon = start(tmp_path, daemons)
        stalker = peer(prosody, peers, "stalker")
        for n, inner in enumerate(HOSTILE):
            stalker.send(f"<message to='{VICTIM}' type='chat' id='h{n}'>{inner}</message>")
        friend = peer(prosody, peers, "friend")
        friend.send(f"<message to='{VICTIM}' type='chat' id='after'><body>hi</body></message>")
        wait_for(
            lambda: (
                daemon.count("item.quarantined") == len(HOSTILE) or daemon.proc.poll() is not None
            ),
            timeout=60,
            what="every hostile stanza quarantined",
        )
        friend.iq("<ping xmlns='urn:xmpp:ping'/>", kind="get", to=DOMAIN)
        assert daemon.proc.poll() is None, daemon.log_text()
        assert "Traceback" not in daemon.log_text()
        assert daemon.stop() == 0
    finally:
        for p in peers:
            p.close()
        for d in daemons:
            d.stop()
        tap.close()
    entries = archived(tmp_path)
    assert sorted(str(e["message_id"]) for e in entries) == sorted(
        f"h{n}" for n in range(len(HOSTILE))
    )  # every one, once each, and not the friend's message
    wire = bytes(tap.received)
    for entry in entries:
        raw = blob(tmp_path, entry["seq"])
        assert raw.startswith(b"<message") and raw in wire
        assert entry["offender"] == "Stalker" and meta(entry)["from"].startswith("stalker@")
