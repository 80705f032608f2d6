"""The milter's archive equals the after-queue filter's archive of the same message.

One private Postfix runs both: guardmail's milter on the public smtpd (protecting alice), and
guardmail's after-queue filter behind it (protecting bob). Each message goes to alice and bob
from the same offender, so both archive it under the same Postfix queue ID. The after-queue copy
starts with the Received header Postfix wrote; Postfix does not show a milter its own header, so
without it the two must be equal, byte for byte, over CPython's email test corpus, the hostile
corpus, 8-bit, bare LF and long folded headers.
"""

from __future__ import annotations

import importlib.util
import re
import smtplib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.hostile.corpus import corpus
from tests.integration.test_milter_postfix import evidence
from tests.servers.postfix import Guardmail, Postfix, start_postfix

pytestmark = pytest.mark.integration

USERS = ["alice@example.test", "bob@example.test"]
TENANT = """\
name: {name}
recipients: [{name}@example.test]
offenders:
  - name: Ex
    addresses: [ex@bad.example]
    action: block
"""
MILTER = """\
state_dir: {root}/milter-var
sources:
  smtp_filter:
    listen: unix:{socket}
    socket_group: postfix
    mode: milter
    tenants_dir: {root}/milter.d
"""
AFTER = """\
state_dir: {root}/after-var
sources:
  smtp_filter:
    listen: 127.0.0.1:{listen}
    next_hop: 127.0.0.1:{next_hop}
    mode: after_queue
    tenants_dir: {root}/after.d
"""
# The first header field, with its continuation lines.
_FIRST_FIELD = re.compile(rb"[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*")
MAX_SIZE = 2 << 20  # the hostile corpus's many-megabyte shapes add time, not cases


def shapes() -> dict[str, bytes]:
    """Messages that test what a milter is given: the test corpora and a few shapes of ours."""
    found: dict[str, bytes] = {
        "8bit-folded": (
            b"From: Ex <ex@bad.example>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= \xc3\xa4\r\n"
            b"X-Long: " + b" ".join(b"w%d" % i for i in range(400)) + b"\r\n"
            b"X-Folded: a\r\n\tb\r\n    c\r\nX-Empty:\r\nX-Tab:\tt\r\n\r\n\xc3\xa4\xff\r\n"
        ),
        "bare-lf": b"From: ex@bad.example\nSubject: lf\n\nline\nline2\r\nlast",
        "bare-cr": b"From: ex@bad.example\r\nSubject: cr\r\n\r\na\rb\r\n",
        "no-body": b"From: ex@bad.example\r\nSubject: headers only\r\n",
        "empty-body": b"From: ex@bad.example\r\nSubject: empty body\r\n\r\n",
        "no-blank-line": b"From: ex@bad.example\r\nnot a header line\r\nbody\r\n",
        "space-before-colon": b"From: ex@bad.example\r\nSubject : spaced\r\n\r\nb\r\n",
        "long-line": b"From: ex@bad.example\r\n\r\n" + b"y" * 5000 + b"\r\n",
    }
    spec = importlib.util.find_spec("test")
    if spec is not None and spec.submodule_search_locations:
        data = Path(next(iter(spec.submodule_search_locations))) / "test_email" / "data"
        for path in sorted(data.glob("msg_*.txt")):
            found[f"cpython-{path.name}"] = path.read_bytes()
    for hostile in corpus():
        if 0 < len(hostile.raw) <= MAX_SIZE:
            found[f"hostile-{hostile.name}"] = hostile.raw
    return found


# What a milter cannot be told (milter_codec's contracts): whether a message with no body ended
# its header block with a blank line. The common form (a blank line) is the one rebuilt.
NOT_EXACT = {
    "no-body",
    *(
        f"hostile-{s}-{w}"
        for s in ("bare-cr", "no-separator", "no-newline-at-all")
        for w in ("offender", "clean")
    ),
}


@pytest.fixture
def started() -> Iterator[list[Postfix | Guardmail]]:
    running: list[Postfix | Guardmail] = []
    yield running
    for thing in reversed(running):
        thing.stop()


def test_the_milter_archives_what_the_after_queue_filter_archives(
    tmp_path: Path, started: list[Postfix | Guardmail]
) -> None:
    for name, where in (("alice", "milter.d"), ("bob", "after.d")):
        (tmp_path / where).mkdir()
        (tmp_path / where / f"{name}.yaml").write_text(TENANT.format(name=name))
    pf_root = Path(tempfile.mkdtemp(prefix="gm-pf-"))
    socket = pf_root / "milter.sock"
    postfix = start_postfix("after", USERS, root=pf_root, milter=f"unix:{socket}")
    started.append(postfix)
    (tmp_path / "milter.yaml").write_text(MILTER.format(root=tmp_path, socket=socket))
    (tmp_path / "after.yaml").write_text(
        AFTER.format(root=tmp_path, listen=postfix.filter_port, next_hop=postfix.reinject_port)
    )
    for name in ("milter", "after"):
        daemon = Guardmail(tmp_path / f"{name}.yaml", tmp_path / f"{name}.log")
        started.append(daemon)
        daemon.wait_listening()

    sent: dict[str, str] = {}  # queue ID -> shape
    for name, raw in shapes().items():
        try:
            postfix.send(USERS, raw, sender="ex@bad.example")
        except smtplib.SMTPException:
            continue  # refused by Postfix itself (too long a header block...): not filtered
        found = re.findall(rb"\]: ([0-9A-F]+): client=", postfix.log().encode())
        sent[found[-1].decode()] = name
    assert len(sent) > 60
    wait_for(lambda: postfix.queue() == [], timeout=120, what="every message handled")

    # The milter archives the same bytes from the same envelope once (a retry has a new queue
    # ID), and a few shapes are the same bytes once Postfix has read them: match by content.
    milter_entries = evidence(tmp_path / "milter-var", "alice")
    milter = {blob for _, blob in milter_entries}
    assert {e["meta"]["queue_id"] for e, _ in milter_entries} <= set(sent)
    after = {e["meta"]["queue_id"]: b for e, b in evidence(tmp_path / "after-var", "bob")}
    assert set(after) == set(sent)
    differ = []
    for queue_id, name in sent.items():
        received = _FIRST_FIELD.match(after[queue_id])
        assert received is not None and received.group().startswith(b"Received: from ")
        if after[queue_id][received.end() :] not in milter:
            differ.append(name)
    assert sorted(differ) == sorted(NOT_EXACT)
