"""Authentication-Results fields (RFC 8601) as guardmail reads them: only the trusted server's."""

from __future__ import annotations

import pytest

from guardmail.core import authresults
from guardmail.core.authresults import Result, parse, trusted


def test_parse_reads_methods_results_reasons_and_properties() -> None:
    found = parse(
        "mx.example.org; spf=fail (sender IP is 192.0.2.1) smtp.mailfrom=evil.example;"
        ' dkim=pass header.d=example.org header.s="sel 1"; dmarc=fail reason="p=reject"'
        " header.from=example.org"
    )
    assert found is not None and found.authserv_id == "mx.example.org"
    assert [(r.method, r.result) for r in found.results] == [
        ("spf", "fail"),
        ("dkim", "pass"),
        ("dmarc", "fail"),
    ]
    assert found.of("spf")[0].prop("smtp.mailfrom") == "evil.example"
    assert found.of("dkim")[0].prop("header.s") == "sel 1"
    assert found.of("dmarc")[0].reason == "p=reject"
    assert found.of("dmarc")[0].prop("header.from") == "example.org"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # A version after the authserv-id, CFWS around "=", a method version, upper case.
        ("MX.Example.ORG 1; SPF = Pass smtp.mailfrom=a.org", [("spf", "pass")]),
        ("mx.example.org; dkim/1=fail header.d=a.org", [("dkim", "fail")]),
        # Nested comments, a ";" inside a comment and inside a quoted string.
        ('mx.example.org (a (b; c) d); spf=pass (x;y) smtp.mailfrom="a;b"', [("spf", "pass")]),
        # "none": nothing was checked.
        ("mx.example.org; none", []),
        # Junk results are skipped, the others kept.
        ("mx.example.org; =pass; spf; dkim=; dmarc=pass", [("dmarc", "pass")]),
    ],
)
def test_parse_syntax_variants(value: str, expected: list[tuple[str, str]]) -> None:
    found = parse(value)
    assert found is not None and found.authserv_id == "mx.example.org"
    assert [(r.method, r.result) for r in found.results] == expected


@pytest.mark.parametrize("value", ["", "   ", "(only a comment)", ";;;"])
def test_parse_without_authserv_id_is_none(value: str) -> None:
    assert parse(value) is None


def test_parse_is_bounded_on_hostile_values() -> None:
    deep = "mx.example.org; " + "(" * 100_000 + "spf=fail"
    assert parse(deep) == authresults.AuthResults("mx.example.org", ())
    many = "mx.example.org" + "; spf=fail" * 10_000
    found = parse(many)
    assert found is not None and len(found.results) <= authresults.MAX_RESULTS
    long_value = parse("mx.example.org; spf=pass smtp.mailfrom=" + "a" * 100_000)
    assert long_value is not None
    assert len(long_value.results[0].prop("smtp.mailfrom")) <= authresults.MAX_TOKEN


def test_trusted_takes_the_topmost_field_of_the_trusted_server_only() -> None:
    fields = [
        ("Received", "from x by mx.example.org"),
        ("Authentication-Results", "other.example; dmarc=pass"),  # not trusted
        ("Authentication-Results", "MX.example.org; dmarc=fail header.from=example.org"),
        # Written by the sender before the message reached the trusted server: below it.
        ("Authentication-Results", "mx.example.org; dmarc=pass header.from=example.org"),
    ]
    found = trusted(fields, "mx.example.org")
    assert found is not None
    assert found.results == (Result("dmarc", "fail", "", (("header.from", "example.org"),)),)
    assert trusted(fields, "nobody.example") is None
    assert trusted(fields, "") is None
