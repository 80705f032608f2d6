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
# The same for two adjacent bytes at once, indexed by ``first << 8 | second``: bytes 0-1 and
# 2-3 of a 5-gram (256 KB each). Three lookups a 5-gram instead of five: fewer numpy calls,
# which is most of the cost at these sizes (~1,500 bytes).
_CRC_01 = (_CRC_AT[0][:, None] ^ _CRC_AT[1][None, :]).ravel()
_CRC_23 = (_CRC_AT[2][:, None] ^ _CRC_AT[3][None, :]).ravel()
_WORD_BYTES = re.compile(rb"\w+")


def shingle_minima(own: str, k: int) -> tuple[int, ...]:
    """The ``k`` smallest distinct shingle values of ``own`` (see the module docstring)."""
    encoded = own.encode("utf-8", "replace")
    data = np.frombuffer(encoded, dtype=np.uint8)
    n = max(0, len(data) - NGRAM + 1)
    # On ASCII text (most mail) the bytes regex finds the same words as the str one (``\w``
    # of an ASCII character is [A-Za-z0-9_] either way) and spares an encode per pair.
    words: list[bytes] = (
        _WORD_BYTES.findall(encoded)
        if own.isascii()
        else [w.encode("utf-8", "replace") for w in _WORD.findall(own)]
    )
    hashes = np.empty(n + max(0, len(words) - 1), dtype=np.uint32)
    if not len(hashes):
        return ()
    # Every 5-gram's CRC-32 at once (no Python-level loop per shingle: this is the costly
    # step): the CRC of a 5-byte string is the XOR of the CRCs of its bytes each alone in
    # its place (``_CRC_AT``; the CRC is affine, and with an odd number of terms the
    # constants cancel), so the values are those of ``zlib.crc32`` on each 5-gram.
    grams = hashes[:n]
    if n:
        pair = data.astype(np.uint16)  # byte i << 8 | byte i + 1 (the last one: its own)
        pair <<= 8
        pair[:-1] |= data[1:]
        np.take(_CRC_01, pair[:n], out=grams)
        grams ^= _CRC_23[pair[2 : n + 2]]
        grams ^= _CRC_AT[4][data[4 : n + 4]]
    # A word pair is told from a 5-gram by its NUL separator, which text never holds here.
    hashes[n:] = list(map(zlib.crc32, map(b"\0".join, pairwise(words))))
    hashes.sort()
    # The distinct values, smallest first: each value unlike the one before it (a direct
    # comparison: ``np.unique`` hashes first, ``np.diff`` costs a few Python calls more).
    keep = np.empty(len(hashes), dtype=bool)
    keep[0] = True
    np.not_equal(hashes[1:], hashes[:-1], out=keep[1:])
    distinct = hashes[keep]
    if len(distinct) < k:
        return ()  # a text that repeats a few words: too few values to estimate anything
    return tuple(distinct[:k].tolist())
