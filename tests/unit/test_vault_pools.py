"""guardmail.vault.pools: a thread pool made at its first use, once."""

from __future__ import annotations

import threading

from guardmail.vault.pools import lazy_pool


def test_one_pool_made_at_first_call_with_its_size_and_name() -> None:
    pool = lazy_pool(3, "probe")
    first = pool()
    assert pool() is first
    names = first.submit(lambda: threading.current_thread().name).result()
    assert names.startswith("probe")
    assert first._max_workers == 3
    assert lazy_pool(3, "probe")() is not first  # each helper its own pool
    first.shutdown()


def test_concurrent_first_calls_share_one_pool() -> None:
    pool = lazy_pool(1, "race")
    got: list[object] = []
    start = threading.Barrier(8)

    def call() -> None:
        start.wait()
        got.append(pool())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(p) for p in got}) == 1
    pool().shutdown()
