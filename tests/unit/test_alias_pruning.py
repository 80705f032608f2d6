"""A decision's text bound (core/aliases.py ``score(decisive=...)``): the text is left unread only
where it cannot change what the decision sees. Whatever the threshold, the suspicions at or above
it are the full scoring's (offender, likelihood, signals, order), on generated messages against
offenders that share names, clients and texts (more of them than ``MAX_TEXT_CANDIDATES``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from guardmail.core.alias_features import extract
from guardmail.core.alias_text import MAX_TEXT_CANDIDATES, message_signature
from guardmail.core.alias_weights import DEFAULT_THRESHOLD
from guardmail.core.aliases import AliasIndex
from guardmail.core.item import mail_identities
from tests.unit.test_alias_text import OFFENDER, OFFENDER_AGAIN, OTHER, SAME_TOPIC, mail

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TEXTS = (OFFENDER, OFFENDER_AGAIN, OTHER, SAME_TOPIC, "Just answer.")
CLIENTS = ("", "Mutt/2.2.9", "Thunderbird/115.0")
# (name, display name, client, text of their earlier mail): two Marks, one client for most.
OFFENDERS = [
    ("mark", "Mark Dalton", "Mutt/2.2.9", OFFENDER),
    ("mark2", "Mark Dale", "Mutt/2.2.9", OTHER),
    ("anna", "Anna Berg", "Mutt/2.2.9", SAME_TOPIC),
    ("jo", "Jo Dalton", "Thunderbird/115.0", OFFENDER),
    ("sam", "Sam Weller", "Mutt/2.2.9", OFFENDER_AGAIN),
    ("kim", "Kim Berg", "Mutt/2.2.9", OFFENDER),
]
NAMES = ("", "Mark", "Mark Dalton", "M. Dalton", "Dalton", "Anna Berg", "Kim B.", "Sam Wellr")
LOCALS = ("new1", "markdalton", "annaberg", "sam.weller", "kimberg7")


def _index() -> AliasIndex:
    idx = AliasIndex.build([(n, [f"{n}@off.example"], [d]) for n, d, _, _ in OFFENDERS])
    for i, (name, display, client, text) in enumerate(OFFENDERS):
        raw = mail(f"{display} <{name}@off.example>", text, client=client)
        idx.add(name, extract(raw, mail_identities(raw), text=True), NOW - timedelta(days=i))
    return idx


INDEX = _index()


def _both(raw: bytes, threshold: float) -> tuple[list[object], list[object], int]:
    feats = extract(raw, mail_identities(raw))
    calls = [0]

    def text() -> tuple[int, ...]:
        calls[0] += 1
        return message_signature(raw)

    full = INDEX.score(feats, now=NOW, text=lambda: message_signature(raw))
    pruned = INDEX.score(feats, now=NOW, text=text, decisive=threshold)
    # What a decision calls: the same suspicions at or above the threshold, the others unbuilt.
    assert INDEX.suspects(
        feats, now=NOW, text=lambda: message_signature(raw), threshold=threshold
    ) == [s for s in pruned if s.likelihood >= threshold]
    return (
        [s for s in full if s.likelihood >= threshold],
        [s for s in pruned if s.likelihood >= threshold],
        calls[0],
    )


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    local=st.sampled_from(LOCALS),
    client=st.sampled_from(CLIENTS),
    text=st.sampled_from(TEXTS),
    threshold=st.one_of(
        st.floats(min_value=0.0, max_value=1.0),
        st.sampled_from([DEFAULT_THRESHOLD, 0.05, 0.1, 0.3, 0.9, 0.99]),
    ),
)
def test_a_pruned_decision_sees_what_the_full_scoring_sees(
    name: str, local: str, client: str, text: str, threshold: float
) -> None:
    raw = mail(f"{name} <{local}@free.example>" if name else f"{local}@free.example", text, client)
    full, pruned, calls = _both(raw, threshold)
    assert pruned == full
    assert calls <= 1


def test_at_a_threshold_equal_to_a_full_likelihood() -> None:
    # The edge: a threshold that is exactly an offender's likelihood with the text.
    raw = mail("Mark <new1@free.example>", OFFENDER_AGAIN, client="Mutt/2.2.9")
    feats = extract(raw, mail_identities(raw))
    full = INDEX.score(feats, now=NOW, text=lambda: message_signature(raw))
    assert any(any(x.signal == "text" for x in s.signals) for s in full)
    for s in full:
        f, p, _ = _both(raw, s.likelihood)
        assert p == f and s in p


# (what, sender, client, text read at the default threshold)
CASES = [
    ("nothing found: no text", "new1@free.example", "", False),
    ("a first name: even the strongest band stays below", "Mark <new1@free.example>", "", False),
    ("the client: the strongest band can carry it", "new1@free.example", "Mutt/2.2.9", True),
    ("over the threshold already: read, for its signals", "Mark Dalton <n@free.example>", "", True),
]


def test_the_text_is_read_only_where_it_can_matter() -> None:
    for what, sender, client, read in CASES:
        raw = mail(sender, OFFENDER_AGAIN, client=client)
        full, pruned, calls = _both(raw, DEFAULT_THRESHOLD)
        assert pruned == full, what
        assert calls == int(read), what


def test_the_candidates_are_the_full_scorings() -> None:
    # More offenders share the client than get the text: the bound looks at the same
    # MAX_TEXT_CANDIDATES the full scoring compares, not at the ones below them.
    raw = mail("new1@free.example", OFFENDER, client="Mutt/2.2.9")
    feats = extract(raw, mail_identities(raw))
    full = INDEX.score(feats, now=NOW, text=lambda: message_signature(raw))
    with_text = [s for s in full if any(x.signal == "text" for x in s.signals)]
    assert 0 < len(with_text) <= MAX_TEXT_CANDIDATES < len(full)
    for t in (0.01, 0.1, DEFAULT_THRESHOLD, 0.9):
        f, p, _ = _both(raw, t)
        assert p == f
