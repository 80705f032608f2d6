"""Mail forged in the person's own name, and its backscatter (core/impersonation.py)."""

from __future__ import annotations

import pytest

from guardmail.core.impersonation import OwnNames, aligned, check
from guardmail.core.item import mail_identities

OWN = OwnNames.build(["sam@example.org", "Sam.Person@gmail.com"], [], "mx.example.org")
DOMAIN = OwnNames.build([], ["example.org"], "mx.example.org")


def msg(*headers: str, body: str = "hello\r\n") -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def judged(raw: bytes, own: OwnNames = OWN) -> tuple[str, str] | None:
    found = check(raw, mail_identities(raw), own)
    return (found.kind, found.why) if found else None


AR = "Authentication-Results: mx.example.org; "


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        # DMARC decides when the trusted server gave a verdict.
        (["From: Sam <sam@example.org>", AR + "dmarc=fail header.from=example.org"], "forged"),
        (["From: Sam <sam@example.org>", AR + "dmarc=pass header.from=example.org"], None),
        # The person's address in another spelling (a Gmail dot, a tag) is still theirs.
        (["From: <sampers.on+x@googlemail.com>", AR + "dmarc=fail"], "forged"),
        # No DMARC verdict: an aligned SPF or DKIM pass makes it genuine ...
        (
            ["From: sam@example.org", AR + "spf=pass smtp.mailfrom=bounce.example.org"],
            None,
        ),
        (["From: sam@example.org", AR + "spf=softfail; dkim=pass header.d=example.org"], None),
        # ... an unaligned pass does not, and a failure then flags it.
        (
            ["From: sam@example.org", AR + "spf=pass smtp.mailfrom=evil.example; dkim=fail"],
            "forged",
        ),
        (["From: sam@example.org", AR + "spf=softfail smtp.mailfrom=evil.example"], "forged"),
        # Nothing checked or only neutral results: guardmail cannot tell, so it passes.
        (["From: sam@example.org", AR + "spf=none; dkim=none"], None),
        (["From: sam@example.org", AR + "spf=neutral"], None),
        (["From: sam@example.org"], None),
        # Another server's results count for nothing, whatever they say.
        (["From: sam@example.org", "Authentication-Results: evil.example; dmarc=fail"], None),
        # Not the person's address: not impersonation (an offender rule's business).
        (["From: other@example.org", AR + "dmarc=fail"], None),
        # The person's address shown in the display name of someone else's mail.
        (['From: "sam@example.org" <x@evil.example>', AR + "dmarc=pass"], "shown"),
        (['From: "sam@example.org" <sam@example.org>', AR + "dmarc=pass"], None),
    ],
)
def test_forged_own_address(headers: list[str], kind: str | None) -> None:
    found = judged(msg(*headers, "Subject: x"))
    assert (found[0] if found else None) == kind, found


def test_own_domain_and_its_subdomains_are_the_persons() -> None:
    raw = msg("From: anyone@mail.example.org", AR + "dmarc=fail")
    assert judged(raw, DOMAIN) is not None
    assert judged(msg("From: anyone@example.org.evil", AR + "dmarc=fail"), DOMAIN) is None
    assert judged(msg("From: anyone@notexample.org", AR + "dmarc=fail"), DOMAIN) is None


def test_why_names_the_address_and_the_server() -> None:
    found = judged(msg("From: sam@example.org", AR + "spf=fail smtp.mailfrom=evil.example"))
    assert found is not None
    assert "sam@example.org" in found[1] and "mx.example.org" in found[1]
    assert "spf=fail" in found[1]


def test_nothing_configured_flags_nothing() -> None:
    empty = OwnNames.build([], [], "")
    assert judged(msg("From: sam@example.org", AR + "dmarc=fail"), empty) is None


def dsn(returned: str, *, kind: str = "message/rfc822") -> bytes:
    return msg(
        "From: Mail Delivery System <MAILER-DAEMON@mx.other.example>",
        "To: sam@example.org",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
        body=(
            "--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
            "--b\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\n"
            f"--b\r\nContent-Type: {kind}\r\n\r\n{returned}\r\n\r\nbody\r\n--b--\r\n"
        ),
    )


FORGED = "From: Sam <sam@example.org>\r\nTo: boss@work.example\r\nSubject: I quit"
SIGNED = "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; h=from; bh=x; b=y\r\n" + FORGED


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (dsn(FORGED), "backscatter"),
        (dsn(FORGED, kind="text/rfc822-headers"), "backscatter"),
        (dsn(SIGNED), None),  # a genuine bounce of the person's own mail
        (dsn("From: someone@else.example\r\nSubject: x"), None),
        # qmail quotes the returned message in plain text.
        (
            msg(
                "From: MAILER-DAEMON@mx.other.example",
                body="Sorry.\r\n--- Below this line is a copy of the message.\r\n\r\n"
                + FORGED
                + "\r\n\r\nbody\r\n",
            ),
            "backscatter",
        ),
        # An auto-reply that quotes nothing cannot be told apart: left alone.
        (msg("From: boss@work.example", "Auto-Submitted: auto-replied", "Subject: Away"), None),
        # A message that is no report, carrying a copy of a forged message: not backscatter.
        (
            msg(
                "From: friend@else.example",
                'Content-Type: multipart/mixed; boundary="b"',
                body=f"--b\r\nContent-Type: message/rfc822\r\n\r\n{FORGED}\r\n\r\nx\r\n--b--",
            ),
            None,
        ),
    ],
)
def test_backscatter(raw: bytes, kind: str | None) -> None:
    found = judged(raw)
    assert (found[0] if found else None) == kind, found


def test_backscatter_uses_the_configured_signing_domains() -> None:
    own = OwnNames.build(["sam@example.org"], [], "", ["mailhost.example"])
    assert judged(dsn(SIGNED), own) is not None  # signed by example.org, not the provider
    signed = SIGNED.replace("d=example.org", "d=mailhost.example")
    assert judged(dsn(signed), own) is None


def test_hostile_reports_are_bounded() -> None:
    huge = dsn(FORGED).replace(b"Your message", b"x" * 5_000_000 + b"Your message")
    assert judged(huge) is None  # the returned part lies beyond the scanned window
    no_end = msg(
        "From: MAILER-DAEMON@x",
        "Content-Type: multipart/report",
        body="--b\r\nContent-Type: message/rfc822\r\n" + "X: y\r\n" * 200_000,
    )
    assert judged(no_end) is None


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("example.org", "example.org", True),
        ("mail.example.org", "example.org", True),
        ("EXAMPLE.org.", "example.org", True),
        ("example.org", "org", False),  # a one-label "domain" aligns with nothing
        ("badexample.org", "example.org", False),
        ("", "example.org", False),
    ],
)
def test_aligned(a: str, b: str, expected: bool) -> None:
    assert aligned(a, b) is expected
