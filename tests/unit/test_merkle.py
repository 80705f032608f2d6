"""guardmail.core.merkle against RFC 9162 section 2.1, and against a second implementation: the
naive recursive definitions below, written from the RFC's text (MTH, PATH, SUBPROOF), sharing
nothing with the module but SHA-256."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from guardmail.core.merkle import (
    EMPTY_ROOT,
    Frontier,
    Tree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

# -- the RFC's definitions, as written (section 2.1.1, 2.1.3.1, 2.1.4.1) ----------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256().digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    return subproof(m, d, True)


def data(n: int, salt: int = 0) -> list[bytes]:
    return [f"entry {i} {salt}".encode() for i in range(n)]


def flip(h: bytes, at: int = 0) -> bytes:
    return h[:at] + bytes([h[at] ^ 1]) + h[at + 1 :]


# -- the same answers as the RFC's definitions ------------------------------------------------


def test_empty_and_single_leaf_roots_are_the_rfc_ones() -> None:
    assert Tree().root() == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert Tree([leaf_hash(b"x")]).root() == hashlib.sha256(b"\x00x").digest()
    assert Frontier().root() == EMPTY_ROOT


def test_every_root_path_and_proof_up_to_70_leaves_equals_the_rfc_definitions() -> None:
    d = data(70)
    tree = Tree(leaf_hash(x) for x in d)
    frontier = Frontier()
    for n in range(0, 71):
        assert tree.root(n) == mth(d[:n]), n
        if n:
            frontier = frontier.extend([leaf_hash(d[n - 1])])
        assert frontier.root() == mth(d[:n]), n
        for m in range(n):
            assert tree.inclusion_path(m, n) == path(m, d[:n]), (m, n)
        for m in range(1, n):
            assert tree.consistency_proof(m, n) == proof(m, d[:n]), (m, n)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 400), salt=st.integers(0, 10**6))
def test_every_inclusion_proof_verifies_and_any_changed_node_fails(n: int, salt: int) -> None:
    d = data(n, salt)
    tree = Tree(leaf_hash(x) for x in d)
    root = mth(d)
    assert tree.root() == root
    for m in range(n):
        p = tree.inclusion_path(m)
        leaf = leaf_hash(d[m])
        assert verify_inclusion(index=m, size=n, leaf=leaf, path=p, root=root)
        assert not verify_inclusion(index=m, size=n, leaf=flip(leaf), path=p, root=root)
        assert not verify_inclusion(index=m, size=n, leaf=leaf, path=p, root=flip(root, 31))
        for i in range(len(p)):
            bad = p[:i] + [flip(p[i], i % 32)] + p[i + 1 :]
            assert not verify_inclusion(index=m, size=n, leaf=leaf, path=bad, root=root)
        if p:
            assert not verify_inclusion(index=m, size=n, leaf=leaf, path=p[:-1], root=root)
        assert not verify_inclusion(index=m, size=n, leaf=leaf, path=p + [root], root=root)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 300), salt=st.integers(0, 10**6))
def test_every_consistency_proof_verifies_and_any_changed_node_fails(n: int, salt: int) -> None:
    d = data(n, salt)
    tree = Tree(leaf_hash(x) for x in d)
    second = tree.root()
    for m in range(1, n + 1):
        p = tree.consistency_proof(m, n)
        first = tree.root(m)
        ok = verify_consistency(first=m, second=n, first_root=first, second_root=second, proof=p)
        assert ok, (m, n)
        assert not verify_consistency(
            first=m, second=n, first_root=flip(first), second_root=second, proof=p
        )
        assert not verify_consistency(
            first=m, second=n, first_root=first, second_root=flip(second), proof=p
        )
        for i in range(len(p)):
            bad = p[:i] + [flip(p[i], i % 32)] + p[i + 1 :]
            assert not verify_consistency(
                first=m, second=n, first_root=first, second_root=second, proof=bad
            ), (m, n, i)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 200), data_=st.data())
def test_a_rewritten_leaf_breaks_consistency_with_the_tree_before_it(
    n: int, data_: st.DataObject
) -> None:
    """The attack a plain hash chain cannot see: one old entry rewritten and everything after
    it recomputed. The new tree has a valid root of its own, but no proof links it to the old."""
    m = data_.draw(st.integers(1, n - 1))
    changed = data_.draw(st.integers(0, m - 1))
    d = data(n)
    old = mth(d[:m])
    forged = list(d)
    forged[changed] = b"rewritten"
    tree = Tree(leaf_hash(x) for x in forged)
    p = tree.consistency_proof(m, n)
    assert not verify_consistency(
        first=m, second=n, first_root=old, second_root=tree.root(), proof=p
    )


def test_proofs_between_a_tree_and_itself_or_the_empty_tree_are_empty() -> None:
    tree = Tree(leaf_hash(x) for x in data(5))
    r = tree.root()
    assert tree.consistency_proof(5, 5) == [] == tree.consistency_proof(0, 5)
    assert verify_consistency(first=5, second=5, first_root=r, second_root=r, proof=[])
    assert not verify_consistency(first=5, second=5, first_root=r, second_root=flip(r), proof=[])
    assert verify_consistency(first=0, second=5, first_root=EMPTY_ROOT, second_root=r, proof=[])
    assert not verify_consistency(first=3, second=5, first_root=r, second_root=r, proof=[])
    assert not verify_consistency(first=6, second=5, first_root=r, second_root=r, proof=[r])


def test_out_of_range_indexes_fail_rather_than_verify() -> None:
    tree = Tree(leaf_hash(x) for x in data(4))
    leaf = tree.leaf(0)
    assert not verify_inclusion(index=4, size=4, leaf=leaf, path=[], root=tree.root())
    assert not verify_inclusion(index=-1, size=4, leaf=leaf, path=[], root=tree.root())
    assert verify_inclusion(index=0, size=1, leaf=leaf, path=[], root=leaf)
