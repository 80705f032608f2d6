"""Deciding on an item: which offender, which rule, which header, and what to do."""

import tracemalloc
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardmail.core.item import Identity, mail_identities
from guardmail.core.rules import MEMO_SIZE, Action, OffenderRule, RuleSet, clear_caches, decide

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

EXAMPLE = OffenderRule(
    name="Example Offender",
    addresses=("stalker@example.net",),
    patterns=("*@burner.example", "re:^st[a4]lker[0-9]*@"),
    domains=("harass.example",),
    display_names=("Stalker*",),
    jids=("stalker@xmpp.example.net",),
    action=Action.QUARANTINE,
)
BLOCKED = OffenderRule(name="Blocked One", addresses=("worse@example.org",), action=Action.BLOCK)
RULES = RuleSet([EXAMPLE, BLOCKED])


def verdict_of(raw: bytes, **kw: str) -> tuple[str, str | None, str | None, str | None]:
    v = decide(mail_identities(raw, **kw), RULES, now=NOW)
    p = v.primary
    return (str(v.action), v.offender, p.rule if p else None, p.header if p else None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b"From: stalker@example.net\n\n",
            ("quarantine", "Example Offender", "addresses[0]: stalker@example.net", "From"),
        ),
        (
            b"From: STALKER+love@Example.NET.\n\n",
            ("quarantine", "Example Offender", "addresses[0]: stalker@example.net", "From"),
        ),
        (
            b"From: anyone@burner.example\n\n",
            ("quarantine", "Example Offender", "patterns[0]: *@burner.example", "From"),
        ),
        (
            b"From: st4lker99@fresh.example\n\n",
            ("quarantine", "Example Offender", "patterns[1]: re:^st[a4]lker[0-9]*@", "From"),
        ),
        (
            b"From: x@mail.harass.example\n\n",
            ("quarantine", "Example Offender", "domains[0]: harass.example", "From"),
        ),
        (
            b"From: =?utf-8?q?stalker_Bob?= <nice@innocent.example>\n\n",
            ("quarantine", "Example Offender", "display_names[0]: Stalker*", "From"),
        ),
        (
            b"From: friend@innocent.example\nReply-To: stalker@example.net\n\n",
            ("quarantine", "Example Offender", "addresses[0]: stalker@example.net", "Reply-To"),
        ),
        (
            b"From: friend@innocent.example\nReturn-Path: <x@burner.example>\n\n",
            ("quarantine", "Example Offender", "patterns[0]: *@burner.example", "Return-Path"),
        ),
        (
            "From: st\u0430lker@example.net\n\n".encode(),
            ("quarantine", "Example Offender", "addresses[0]: stalker@example.net", "From"),
        ),
        (
            b"From: stalker@xmpp.example.net\n\n",
            ("quarantine", "Example Offender", "jids[0]: stalker@xmpp.example.net", "From"),
        ),
        (
            b"From: stalker@example.net\nSender: worse@example.org\n\n",
            ("block", "Blocked One", "addresses[0]: worse@example.org", "Sender"),
        ),
        (
            b"From: =?utf-8?b?c3RhbGtlckBleGFtcGxlLm5ldA==?=\n\n",
            (
                "quarantine",
                "Example Offender",
                "addresses[0]: stalker@example.net",
                "From (encoded word)",
            ),
        ),
        (
            b'From: "x@burner.example" <friend@innocent.example>\n\n',
            (
                "quarantine",
                "Example Offender",
                "patterns[0]: *@burner.example",
                "From (display name)",
            ),
        ),
        (
            b'From: "friend@innocent.example, a@harass.example" <friend@innocent.example>\n\n',
            ("quarantine", "Example Offender", "domains[0]: harass.example", "From (display name)"),
        ),
        (
            b"From: =?utf-8?b?c3TQsGxrZXJAZXhhbXBsZS5uZXQ=?=\n\n",
            (
                "quarantine",
                "Example Offender",
                "addresses[0]: stalker@example.net",
                "From (encoded word)",
            ),
        ),
        (b"From: friend@innocent.example\n\n", ("pass", None, None, None)),
        (b"From: Stalk Free <friend@notharass.example>\n\n", ("pass", None, None, None)),
        (b"From: Support Team <help@shop.example>\n\n", ("pass", None, None, None)),
        (b"Subject: no sender\n\n", ("pass", None, None, None)),
    ],
    ids=[
        "exact-address",
        "case-tag-trailing-dot",
        "glob",
        "regex",
        "subdomain",
        "display-name-glob-rfc2047",
        "reply-to",
        "return-path",
        "cyrillic-a",
        "jid-as-mail-address",
        "block-beats-quarantine",
        "encoded-word-address",
        "address-shaped-display-name",
        "two-addresses-in-a-display-name",
        "encoded-word-cyrillic-lookalike",
        "clean",
        "similar-but-clean-domain",
        "clean-display-name",
        "no-identity",
    ],
)
def test_verdict_names_offender_rule_and_header(
    raw: bytes, expected: tuple[str, str | None, str | None, str | None]
) -> None:
    assert verdict_of(raw) == expected


def test_envelope_sender_alone_is_enough_to_match() -> None:
    assert verdict_of(b"From: friend@innocent.example\n\n", envelope_sender="x@burner.example")[
        :2
    ] == ("quarantine", "Example Offender")


def test_xmpp_jid_identity_drops_the_resource() -> None:
    v = decide([Identity(source="jid", address="Stalker@XMPP.example.net/phone")], RULES, now=NOW)
    assert v.action is Action.QUARANTINE
    assert v.primary is not None and v.primary.rule == "jids[0]: stalker@xmpp.example.net"


def test_every_match_is_kept_and_the_time_is_the_one_given() -> None:
    v = decide(mail_identities(b"From: Stalker <stalker@burner.example>\n\n"), RULES, now=NOW)
    assert v.decided_at == NOW
    assert {m.rule for m in v.matches} == {
        "patterns[0]: *@burner.example",
        "patterns[1]: re:^st[a4]lker[0-9]*@",
        "display_names[0]: Stalker*",
    }


def test_empty_ruleset_passes_everything() -> None:
    v = decide(mail_identities(b"From: stalker@example.net\n\n"), RuleSet([]), now=NOW)
    assert v.action is Action.PASS and v.primary is None and v.offender is None


def test_many_rules_still_find_the_right_offender() -> None:
    offenders = [
        OffenderRule(
            name=f"o{i}",
            addresses=(f"user{i}@example{i % 97}.net",),
            patterns=(f"*@burner{i}.example", f"re:^alias{i}x[0-9]*@"),
            domains=(f"harass{i}.example",),
        )
        for i in range(5000)
    ]
    rules = RuleSet(offenders)
    for raw, name in [
        (b"From: user4321@example53.net\n\n", "o4321"),
        (b"From: x@burner777.example\n\n", "o777"),
        (b"From: alias1234x5@anywhere.example\n\n", "o1234"),
        (b"From: a@mx.harass4999.example\n\n", "o4999"),
    ]:
        assert decide(mail_identities(raw), rules, now=NOW).offender == name
    assert decide(mail_identities(b"From: a@b.example\n\n"), rules, now=NOW).offender is None


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=400)
    | st.builds(
        lambda name, value, rest: b"%s: %s\r\n\r\n%s" % (name, value, rest),
        st.sampled_from([b"From", b"Reply-To", b"Sender", b"Return-Path", b"Resent-From"]),
        st.binary(max_size=200),
        st.binary(max_size=50),
    )
)
def test_any_bytes_are_decided_without_raising(raw: bytes) -> None:
    verdict = decide(mail_identities(raw), RULES, now=NOW)
    assert verdict.action in set(Action)


LOOKALIKE = RuleSet(
    [
        OffenderRule(
            name="Patterned",
            patterns=("re:^st[a4]lker[0-9]*@", "stalker[0-9]*@gmail.com"),
        )
    ]
)


@pytest.mark.parametrize(
    ("address", "looks_like"),
    [
        ("st\u0430lker1@gmail.com", "looks like stalker1@gmail.com: Cyrillic \u0430 (U+0430)"),
        ("st\u03b1lker1@gmail.com", "looks like stalker1@gmail.com: Greek \u03b1 (U+03B1)"),
        ("\uff53talker1@gmail.com", "looks like stalker1@gmail.com: Fullwidth \uff53 (U+FF53)"),
        ("ST\u0410LKER1@GMAIL.COM", "looks like stalker1@gmail.com: Cyrillic \u0430 (U+0430)"),
        ("stalker1@gmail.com", ""),
    ],
    ids=["cyrillic", "greek", "fullwidth", "cyrillic-capital", "ascii"],
)
def test_lookalike_letters_do_not_get_past_a_regex_or_a_glob(address: str, looks_like: str) -> None:
    v = decide([Identity(source="From", address=address)], LOOKALIKE, now=NOW)
    assert [(m.rule, m.looks_like) for m in v.matches] == [
        ("patterns[0]: re:^st[a4]lker[0-9]*@", looks_like),
        ("patterns[1]: stalker[0-9]*@gmail.com", looks_like),
    ]


@pytest.mark.parametrize(
    "address", ["stolker1@gmail.com", "walker1@gmail.com", "stalkerx@gmail.com", "j\u00f6rg@x.de"]
)
def test_clean_address_near_a_pattern_is_not_matched(address: str) -> None:
    v = decide([Identity(source="From", address=address)], LOOKALIKE, now=NOW)
    assert v.action is Action.PASS


def test_lookalike_display_name_does_not_get_past_a_display_name_glob() -> None:
    rules = RuleSet([OffenderRule(name="Named", display_names=("Stalker[0-9]*",))])
    v = decide([Identity(source="From", display_name="St\u0430lker1 Bob")], rules, now=NOW)
    assert [(m.rule, m.looks_like) for m in v.matches] == [
        ("display_names[0]: Stalker[0-9]*", "looks like stalker1 bob: Cyrillic \u0430 (U+0430)")
    ]


def test_punycode_lookalike_domain_does_not_get_past_a_glob() -> None:
    rules = RuleSet([OffenderRule(name="Apple", patterns=("*@apple.com",))])
    v = decide([Identity(source="From", address="x@xn--pple-43d.com")], rules, now=NOW)
    assert [(m.rule, m.normalized, m.looks_like) for m in v.matches] == [
        (
            "patterns[0]: *@apple.com",
            "x@\u0430pple.com",
            "looks like x@apple.com: Cyrillic \u0430 (U+0430)",
        )
    ]


def test_the_fingerprint_is_equal_for_equal_rules_and_changes_with_an_offender() -> None:
    one = OffenderRule(name="A", addresses=("a@example.net",))
    two = OffenderRule(name="B", domains=("example.org",), action=Action.BLOCK)
    assert RuleSet([one]).fingerprint() == RuleSet([one]).fingerprint()
    assert RuleSet([one]).fingerprint() != RuleSet([one, two]).fingerprint()
    blocked = OffenderRule(name="A", addresses=("a@example.net",), action=Action.BLOCK)
    assert RuleSet([one]).fingerprint() != RuleSet([blocked]).fingerprint()
    assert RuleSet([]).fingerprint() != RuleSet([one]).fingerprint()


def test_a_repeat_sender_gets_the_verdict_of_its_first_sighting() -> None:
    raw = b"From: Someone <st4lker9@fresh.example>\nReply-To: other@example.com\n\n"
    first = decide(mail_identities(raw), RULES, now=NOW)
    again = decide(mail_identities(raw), RULES, now=NOW)
    clear_caches()
    cleared = decide(mail_identities(raw), RULES, now=NOW)
    assert first.action is Action.QUARANTINE
    assert first.matches == again.matches == cleared.matches


def test_what_one_ruleset_remembered_of_a_sender_does_not_reach_another() -> None:
    identities = mail_identities(b"From: worse@example.org\n\n")
    assert decide(identities, RULES, now=NOW).action is Action.BLOCK
    assert decide(identities, RuleSet([EXAMPLE]), now=NOW).action is Action.PASS


def test_more_senders_than_the_memo_holds_are_still_judged_alike() -> None:
    senders = [f"person{i}@site{i % 50}.example" for i in range(MEMO_SIZE + 10)]
    senders[5] = senders[-3] = "stalker@example.net"
    verdicts = [
        decide([Identity(source="From", address=s)], RULES, now=NOW).action for s in senders
    ]
    again = decide([Identity(source="From", address=senders[5])], RULES, now=NOW)
    assert [i for i, a in enumerate(verdicts) if a is not Action.PASS] == [5, len(senders) - 3]
    assert again.action is Action.QUARANTINE


def test_long_made_up_senders_are_judged_but_not_kept_in_memory() -> None:
    # Invariant 6: a header can hold a megabyte. The memos keep thousands of senders, so one
    # that kept these would hold gigabytes after a flood of them.
    rules = RuleSet([EXAMPLE])
    clear_caches()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(24):
            sender = Identity(
                source="From",
                address=f"{i}{'a' * (64 * 1024)}@{'b' * (64 * 1024)}{i}.harass.example",
                display_name=f"{i}{'Bob ' * 1024}",
            )
            assert decide([sender], rules, now=NOW).action is Action.QUARANTINE
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1 << 20, f"{kept:,} bytes kept after 24 senders of 128 KiB"
