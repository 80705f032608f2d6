"""Text like an offender's earlier messages: the alias linker's text signal (issue 24).

``own_text`` keeps what the writer wrote of a message's text: quoted lines (``>``), the lines
of an attribution ("On Monday, X wrote:"), a forwarded or replied-to message below an
``-----Original Message-----`` or ``--- Forwarded`` line, the signature below ``-- `` and a
mailing list's footer below a rule of underscores are dropped: all of them are someone else's
words, or words every member of a list shares. What is left is case-folded, its runs of
white space made one space, and cut to ``MAX_OWN_TEXT`` characters.

``signature`` makes a MinHash signature of that text: the set of its character 5-grams (style:
spelling, punctuation, favourite words) and word pairs (phrasing), each hashed with CRC-32
(stable across processes, unlike ``hash``, and computed in C: a mixing step in Python doubled
the cost), of which the ``K`` smallest values are kept, sorted (a bottom-k sketch, the
one-hash form of MinHash). A text shorter
than ``MIN_OWN_TEXT`` characters has none: a few words say nothing of who wrote them.

``similarity`` estimates the Jaccard similarity of two texts' shingle sets from their
signatures alone: of the ``K`` smallest values of the two signatures' union, the fraction that
is in both. ``best_similarity`` is the highest over an offender's kept signatures (the
``MAX_PROFILE`` newest: core/aliases.py keeps them), the statistic the weights were fitted on.

Weights (the natural log of a likelihood ratio, as core/aliases.py's), fitted on
bench/aliases.py's ``text_calibration``: real senders of the SpamAssassin public corpus's ham,
each one's 8 newest messages as the profile, every other message of theirs held out (the same
writer) against every other sender's profile (another writer, many on the same mailing lists,
so on the same topics). Per band of ``best_similarity``, LR = P(band | same writer) /
P(band | another writer), rounded down and capped (bench/README.md has the table):

=================  =====  ======
best similarity    LR     weight
=================  =====  ======
>= 0.30            30     3.4
0.20 to 0.30       8      2.1
0.12 to 0.20       2      0.7
below 0.12         none
=================  =====  ======

Published authorship-verification results (the PAN shared tasks) say style alone is weak
evidence on short texts, and the fit agrees: the text signal never makes a candidate, it only
adds to an offender other signals found (at most ``MAX_TEXT_CANDIDATES`` of them, the most
likely first), and no band crosses core/aliases.py's ``DEFAULT_THRESHOLD`` alone or with a
weak signal (a first name, the client).

Contracts: pure, total (any text; never raises) and bounded: ``own_text`` reads at most
``MAX_TEXT`` characters and keeps ``MAX_OWN_TEXT``; a signature is at most ``K`` integers; a
comparison is at most ``MAX_PROFILE`` merges of two ``K``-value sorted tuples per candidate.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Sequence

from guardmail.core.alias_body import body_text

K = 64
MIN_OWN_TEXT = 200
MAX_TEXT = 16 * 1024
MAX_OWN_TEXT = 1500
MAX_PROFILE = 8
MAX_TEXT_CANDIDATES = 4
NGRAM = 5
_MASK = 0xFFFFFFFF

# (lowest similarity, likelihood ratio), highest band first: see the module docstring.
BANDS: tuple[tuple[float, float], ...] = ((0.30, 30.0), (0.20, 8.0), (0.12, 2.0))

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
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
    return _SPACE.sub(" ", " ".join(kept)).casefold()[:MAX_OWN_TEXT]


def signature(text: str) -> Signature:
    """The bottom-``K`` MinHash signature of ``text``'s own words; () if too short."""
    own = own_text(text)
    if len(own) < MIN_OWN_TEXT:
        return ()
    data = own.encode("utf-8", "replace")
    n = len(data) - NGRAM + 1
    # map over C callables, no Python-level loop per shingle: this is the costly step.
    grams = map(data.__getitem__, map(slice, range(n), range(NGRAM, n + NGRAM)))
    words = _WORD.findall(own)
    # A word pair is told from a 5-gram by its NUL separator, which text never holds here.
    pairs = (f"{a}\0{b}".encode() for a, b in zip(words, words[1:], strict=False))
    hashes = set(map(zlib.crc32, grams))
    hashes.update(map(zlib.crc32, pairs))
    if len(hashes) < K:
        return ()  # a text that repeats a few words: too few values to estimate anything
    return tuple(sorted(hashes)[:K])


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


def similarity(a: Signature, b: Signature) -> float:
    """The estimated Jaccard similarity of the shingle sets behind ``a`` and ``b``: of the
    ``k`` smallest values of their union (``k`` the shorter signature's length), the fraction
    that both hold."""
    if not a or not b:
        return 0.0
    both = set(a).intersection(b)
    if not both:
        return 0.0  # the common case for another writer's text: no sort needed
    k = min(len(a), len(b))
    cut = sorted(set(a + b))[k - 1]
    return sum(1 for v in both if v <= cut) / k


def best_similarity(query: Signature, profile: Sequence[Signature]) -> float:
    """The highest ``similarity`` of ``query`` to the (at most ``MAX_PROFILE``) signatures."""
    return max((similarity(query, s) for s in profile[-MAX_PROFILE:]), default=0.0)


def band_weight(value: float) -> tuple[float, float]:
    """(likelihood ratio, weight) of a best similarity; (1, 0) below the lowest band."""
    for low, ratio in BANDS:
        if value >= low:
            return ratio, math.log(ratio)
    return 1.0, 0.0
