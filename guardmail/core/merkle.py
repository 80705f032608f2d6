"""The Merkle tree of RFC 9162 (Certificate Transparency 2.0) section 2.1, pure.

Hashes (bytes, 32 long):
- ``leaf_hash(d)  = SHA-256(0x00 || d)`` and ``node_hash(l, r) = SHA-256(0x01 || l || r)``;
- ``MTH({}) = SHA-256()``, ``MTH({d0}) = leaf_hash(d0)``, and for n > 1, with k the largest power
  of two smaller than n, ``MTH(D[n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))``.

``Tree`` holds the leaf hashes and every complete, aligned subtree above them (about 2n hashes),
so that any ``MTH`` the proofs need costs O(log n), a proof O(log^2 n). ``Frontier`` holds only
the roots of the complete subtrees along the right edge (one per set bit of the size): what an
appender needs to compute each new root in O(log n) without reading the leaves again.

``inclusion_path`` and ``consistency_proof`` are PATH and PROOF of section 2.1.3.1 / 2.1.4.1;
``verify_inclusion`` and ``verify_consistency`` are the verification algorithms of sections
2.1.3.2 and 2.1.4.2, step by step. Beyond the RFC (which defines PROOF for 0 < m < n only): the
proof between a tree and itself, and from the empty tree, is empty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class Tree:
    """A tree over leaf hashes, appended one at a time; see the module docstring."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        # levels[j][i] = MTH of the complete subtree of leaves [i * 2^j, (i + 1) * 2^j)
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> None:
        """Add a leaf *hash* (``leaf_hash`` of the entry) at the right."""
        self._levels[0].append(leaf)
        j = 0
        while len(self._levels[j]) % 2 == 0:
            if j + 1 == len(self._levels):
                self._levels.append([])
            below = self._levels[j]
            self._levels[j + 1].append(node_hash(below[-2], below[-1]))
            j += 1

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index]

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all by default)."""
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ValueError(f"tree size {n} is not between 0 and {self.size}")
        return EMPTY_ROOT if n == 0 else self._mth(0, n)

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        j = n.bit_length() - 1
        if n == 1 << j and start % n == 0:
            return self._levels[j][start >> j]
        k = _split(n)
        return node_hash(self._mth(start, start + k), self._mth(start + k, end))

    def inclusion_path(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]): the audit path of leaf ``index`` in the tree of ``size``."""
        n = self.size if size is None else size
        if not 0 <= index < n <= self.size:
            raise ValueError(f"no leaf {index} in a tree of {n} (of {self.size}) leaves")
        path: list[bytes] = []
        start, end, m = 0, n, index
        while end - start > 1:
            k = _split(end - start)
            if m < k:
                path.append(self._mth(start + k, end))
                end = start + k
            else:
                path.append(self._mth(start, start + k))
                start, m = start + k, m - k
        path.reverse()  # the RFC lists the path bottom-up
        return path

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """PROOF(first, D[second]): shows that the tree of ``first`` leaves is a prefix of the
        tree of ``second``."""
        n = self.size if second is None else second
        if not 0 <= first <= n <= self.size:
            raise ValueError(f"no consistency proof from {first} to {n} (of {self.size}) leaves")
        if first in (0, n):
            return []
        proof: list[bytes] = []
        start, end, m, whole = 0, n, first, True
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                proof.append(self._mth(start + k, end))
                end = start + k
            else:
                proof.append(self._mth(start, start + k))
                start, m, whole = start + k, m - k, False
        if not whole:
            proof.append(self._mth(start, end))
        proof.reverse()
        return proof


@dataclass(frozen=True, slots=True, kw_only=True)
class Frontier:
    """The right edge of a tree: its size and the roots of its complete subtrees, largest
    (leftmost) first, one per set bit of ``size``."""

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != self.size.bit_count():
            raise ValueError(f"a frontier of {self.size} leaves has {self.size.bit_count()} hashes")
        if any(len(h) != HASH_SIZE for h in self.hashes):
            raise ValueError("a frontier hash is not 32 bytes")

    def extend(self, leaf_hashes: Iterable[bytes]) -> Frontier:
        hashes = list(self.hashes)
        size = self.size
        for leaf in leaf_hashes:
            new, n = leaf, size
            while n & 1:
                new = node_hash(hashes.pop(), new)
                n >>= 1
            hashes.append(new)
            size += 1
        return Frontier(size=size, hashes=tuple(hashes))

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r


def verify_inclusion(
    *, index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does ``path`` prove that ``leaf`` (a leaf hash) is leaf ``index`` of
    the tree of ``size`` leaves whose root is ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    *, first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: does ``proof`` show that the tree of ``first`` leaves with root
    ``first_root`` is a prefix of the tree of ``second`` leaves with root ``second_root``?"""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0
