"""The hashed shingles of a text, for the alias linker's text signature (core/alias_text.py).

Contracts:
- ``shingle_minima(text, k)`` is the ``k`` smallest distinct values, sorted, of the CRC-32 of
  every 5-gram of ``text``'s UTF-8 bytes and of every pair of adjacent words (joined by NUL,
  which text never holds there); () when there are fewer than ``k``. The values are exactly
  ``zlib.crc32``'s, so signatures stored by earlier versions stay comparable.
- Kept apart from alias_text.py so that numpy is imported only when a signature is made.
"""

from __future__ import annotations

import re
import zlib
from itertools import pairwise

import numpy as np
import numpy.typing as npt

NGRAM = 5  # odd: ``_CRC_AT``'s XOR of NGRAM terms needs it (the constants cancel)
_WORD = re.compile(r"\w+")


def _crc_tables() -> npt.NDArray[np.uint32]:
    """``[j][v]``: the CRC-32 of ``NGRAM`` bytes, all 0 but byte ``j``, which is ``v``."""
    out = np.zeros((NGRAM, 256), dtype=np.uint32)
    for j in range(NGRAM):
        for v in range(256):
            gram = bytearray(NGRAM)
            gram[j] = v
            out[j, v] = zlib.crc32(gram)
    return out


_CRC_AT = _crc_tables()


def shingle_minima(own: str, k: int) -> tuple[int, ...]:
    """The ``k`` smallest distinct shingle values of ``own`` (see the module docstring)."""
    data = np.frombuffer(own.encode("utf-8", "replace"), dtype=np.uint8)
    n = len(data) - NGRAM + 1
    words = _WORD.findall(own)
    hashes = np.empty(n + max(0, len(words) - 1), dtype=np.uint32)
    # Every 5-gram's CRC-32 at once (no Python-level loop per shingle: this is the costly
    # step): the CRC of a 5-byte string is the XOR of the CRCs of its bytes each alone in
    # its place (``_CRC_AT``; the CRC is affine, and with an odd number of terms the
    # constants cancel), so the values are those of ``zlib.crc32`` on each 5-gram.
    grams = hashes[:n]
    np.take(_CRC_AT[0], data[:n], out=grams)
    for j in range(1, NGRAM):
        grams ^= _CRC_AT[j][data[j : n + j]]
    # A word pair is told from a 5-gram by its NUL separator, which text never holds here.
    hashes[n:] = list(map(zlib.crc32, map(str.encode, map("\0".join, pairwise(words)))))
    hashes.sort()
    # The distinct values, smallest first (a sort and a neighbour test: numpy's ``unique``
    # hashes first, and costs more on these sizes).
    distinct = hashes[np.flatnonzero(np.diff(hashes, prepend=np.uint32(0)) != 0)]
    if hashes[0] == 0:  # the test above drops a leading 0 (a CRC-32 of 1 in 4 billion)
        distinct = np.concatenate((hashes[:1], distinct))
    if len(distinct) < k:
        return ()  # a text that repeats a few words: too few values to estimate anything
    return tuple(distinct[:k].tolist())
