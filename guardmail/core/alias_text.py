"""Text like an offender's earlier messages: the alias linker's text signal (issue 24).

``own_text`` keeps what the writer wrote of a message's text: quoted lines (``>``), the lines
of an attribution ("On Monday, X wrote:"), a forwarded or replied-to message below an
``-----Original Message-----`` or ``--- Forwarded`` line, the signature below ``-- `` and a
mailing list's footer below a rule of underscores are dropped: all of them are someone else's
words, or words every member of a list shares. What is left is case-folded, its runs of
white space made one space, and cut to ``MAX_OWN_TEXT`` characters.

``signature`` makes a MinHash signature of that text: the set of its character 5-grams (style:
spelling, punctuation, favourite words) and word pairs (phrasing), each hashed with CRC-32
(stable across processes, unlike ``hash``; core/alias_shingles.py hashes the 5-grams all at
once with numpy, from tables: the same values as ``zlib.crc32``), of which the ``K`` smallest
values are kept, sorted (a bottom-k sketch, the one-hash form of MinHash). A text shorter
than ``MIN_OWN_TEXT`` characters has none: a few words say nothing of who wrote them.

``similarity`` estimates the Jaccard similarity of two texts' shingle sets from their
signatures alone: of the union's values below the lower of the two signatures' last values
(where both are complete), the fraction that both hold. ``best_similarity`` is the highest
over an offender's kept signatures (the ``MAX_PROFILE`` newest: core/aliases.py keeps them),
the statistic the weights were fitted on.

Weights (the natural log of a likelihood ratio, as core/aliases.py's), fitted on
bench/aliases.py's ``text_calibration``: real senders of the SpamAssassin public corpus's ham
(mail of 2002, most of it to mailing lists), not those the bench's offenders write as; each
one's first texts (at most ``MAX_PROFILE``) as the profile, their other texts held out (the
same writer) against every other sender's profile (another writer, many on the same lists,
so on the same topics). Per band of ``best_similarity``, LR = P(band | same writer) /
P(band | another writer); what is shipped is the low end of its ~95% interval (the log ratio
less two standard errors, from the counts), rounded down (bench/README.md has the table):

=================  ========  =======  =====  ======
best similarity    measured  low 95%  LR     weight
=================  ========  =======  =====  ======
>= 0.40            271       181      150    5.0
0.30 to 0.40       104       63       60     4.1
0.12 to 0.30       41        26       25     3.2
0.08 to 0.12       11        8.6      8      2.1
below 0.08         (1.6, then 0.3)    none
=================  ========  =======  =====  ======

Below 0.04 the fit says LR 0.3 (most pairs of writers share almost nothing): that is not used
as evidence against an offender. Their words are the one thing a sender chooses freely; an
alias that writes unlike the offender must not escape the header signals by it.

Published authorship-verification results (the PAN shared tasks) say style alone is weak
evidence on short texts: the text signal never makes a candidate, it only adds to an offender
other signals found (at most ``MAX_TEXT_CANDIDATES`` of them, the most likely first); its
strongest band alone stays at 0.13 (core/aliases.py's prior of 1 in 1,000), below
``DEFAULT_THRESHOLD``; with a first name (LR 3) it stays below (0.31), with the same client
and its version (LR 12, measured on real senders) it crosses (0.64).

Contracts: pure, total (any text; never raises) and bounded: ``own_text`` reads at most
``MAX_TEXT`` characters and keeps ``MAX_OWN_TEXT``; a signature is at most ``K`` integers; a
comparison is at most ``MAX_PROFILE`` merges of two ``K``-value sorted tuples per candidate.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence

from guardmail.core.alias_body import body_text

K = 64
MIN_OWN_TEXT = 200
MAX_TEXT = 16 * 1024
MAX_OWN_TEXT = 1500
MAX_PROFILE = 8
MAX_TEXT_CANDIDATES = 4
_MASK = 0xFFFFFFFF

# (lowest similarity, likelihood ratio), highest band first: see the module docstring.
BANDS: tuple[tuple[float, float], ...] = ((0.40, 150.0), (0.30, 60.0), (0.12, 25.0), (0.08, 8.0))

# A line that starts what someone else wrote: everything below it is theirs.
_CUT = re.compile(
    r"(?:-{2,}\s*(?:original message|forwarded message|forwarded by)"
    r"|_{10,}|-{2,} ?$|begin forwarded message)",
    re.IGNORECASE,
)
_ATTRIBUTION = re.compile(r"(?:wrote|writes|schrieb|a écrit|said):\s*$", re.IGNORECASE)

Signature = tuple[int, ...]


def own_text(text: str) -> str:
    """The writer's own words of ``text`` (see the module docstring), folded."""
    kept: list[str] = []
    size = 0
    for line in text[:MAX_TEXT].splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in ">|":
            continue
        # The regexes only on the few lines that can match: this runs on every suspect's text.
        if stripped[0] in "-_Bb" and _CUT.match(stripped):
            break
        if stripped[-1] == ":" and _ATTRIBUTION.search(stripped):
            continue
        kept.append(stripped)
        size += len(stripped) + 1
        if size >= MAX_OWN_TEXT:
            break
    # White space runs made one space by ``str.split``, what ``re.sub(r"\s+", " ", ...)`` did at a
    # third of its cost: ``\s`` and ``split`` know the same characters as white space, and the
    # joined lines neither start nor end with any (each was stripped): the same string
    # (tests/unit/test_alias_fast_paths.py compares the two).
    return " ".join(" ".join(kept).split()).casefold()[:MAX_OWN_TEXT]


def signature(text: str) -> Signature:
    """The bottom-``K`` MinHash signature of ``text``'s own words; () if too short."""
    own = own_text(text)
    if len(own) < MIN_OWN_TEXT:
        return ()
    # numpy is loaded here, not with the module: the linker is off by default, and a daemon
    # that never computes a signature (the milter of an ISP) does not carry its ~11 MB.
    from guardmail.core.alias_shingles import shingle_minima

    return shingle_minima(own, K)


def message_signature(raw: bytes) -> Signature:
    """``signature`` of a mail message's first text part (core/alias_body.py)."""
    return signature(body_text(raw))


def valid(values: Iterable[object]) -> Signature:
    """A stored signature checked again (stored state may have been edited): ``K`` sorted
    distinct 32-bit integers; () if anything is off."""
    out: list[int] = []
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _MASK or len(out) >= K:
            return ()
        out.append(v)
    if len(out) != K:
        return ()
    if any(a >= b for a, b in zip(out, out[1:], strict=False)):
        return ()
    return tuple(out)


def similarity(a: Signature, b: Signature, b_values: frozenset[int] | None = None) -> float:
    """The estimated Jaccard similarity of the shingle sets behind ``a`` and ``b``
    (``b_values``: ``b`` as a set, if the caller keeps one). Each signature holds every hash
    of its text below its last value, so below ``m``, the lower of the two last values, both
    are complete: the union's values below ``m`` are a uniform sample of the union, and the
    fraction of them that both hold estimates the Jaccard similarity (no merge, no sort)."""
    if not a or not b:
        return 0.0
    both = (b_values if b_values is not None else frozenset(b)).intersection(a)
    if not both:
        return 0.0  # the common case for another writer's text
    m = min(a[-1], b[-1])
    # Every shared value is at most ``m``: it is in ``a`` (so <= a[-1]) and in ``b``.
    shared = len(both)
    return shared / (bisect_right(a, m) + bisect_right(b, m) - shared)


def best_similarity(
    query: Signature,
    profile: Sequence[Signature],
    values: Sequence[frozenset[int]] | None = None,
) -> float:
    """The highest ``similarity`` of ``query`` to the (at most ``MAX_PROFILE`` newest)
    signatures of ``profile`` (``values``: the same as sets, if the caller keeps them)."""
    if values is None:
        return max((similarity(query, s) for s in profile[-MAX_PROFILE:]), default=0.0)
    pairs = list(zip(profile, values, strict=True))[-MAX_PROFILE:]
    return max((similarity(query, s, v) for s, v in pairs), default=0.0)


def profile_similarity(
    query: Signature,
    profile: Sequence[Signature],
    values: Sequence[frozenset[int]],
    union: frozenset[int],
) -> float:
    """``best_similarity(query, profile, values)`` where ``union`` is the union of ``values``
    (what the index keeps): the same value, with the query's values looked up once in the union
    and each signature's set intersected with only those it holds (a signature's values are
    all in the union, so its shared values are among them: most of a text's 64 values are in
    no profile, and ``MAX_PROFILE`` sets were each probed with all 64)."""
    shared = union.intersection(query)
    if not shared:
        return 0.0  # every similarity 0 (the common case for another writer's text)
    best = 0.0
    for sig, sig_values in zip(profile[-MAX_PROFILE:], values[-MAX_PROFILE:], strict=True):
        both = len(shared.intersection(sig_values))
        if both:
            m = min(query[-1], sig[-1])
            # The same sum and division as ``similarity``: the same float.
            value = both / (bisect_right(query, m) + bisect_right(sig, m) - both)
            if value > best:
                best = value
    return best


def band_weight(value: float) -> tuple[float, float]:
    """(likelihood ratio, weight) of a best similarity; (1, 0) below the lowest band."""
    for low, ratio in BANDS:
        if value >= low:
            return ratio, math.log(ratio)
    return 1.0, 0.0
