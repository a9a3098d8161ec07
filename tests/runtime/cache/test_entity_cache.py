"""The cache core: single flight, early refresh (XFetch), expiry, races with writes, and
what happens when the cache server is down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from microforge.runtime.cache.backends import open_backend
from microforge.runtime.cache.config import CacheConfig
from microforge.runtime.cache.entity_cache import EntityCache
from microforge.runtime.cache.entry import Entry
from microforge.runtime.jsonio import make_etag, row_etag


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_cache(clock: Callable[[], float] | None = None, **options: Any) -> EntityCache:
    config = CacheConfig(**{"ttl": 60, "early_refresh": 0, **options})
    backend = open_backend("memory://", capacity=1000)
    if clock is None:
        return EntityCache("Thing", "mf:t:v:Thing", config, backend)
    return EntityCache("Thing", "mf:t:v:Thing", config, backend, clock=clock)


class SlowLoader:
    """A database stand-in for timing only: counts loads and holds each until released."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> Any:
        self.calls += 1
        await self.release.wait()
        return self.value


async def test_concurrent_misses_load_once() -> None:
    cache = make_cache()
    load = SlowLoader({"id": 1, "name": "lamp"})
    readers = [asyncio.ensure_future(cache.get("k", load)) for _ in range(50)]
    await asyncio.sleep(0)  # all 50 are waiting on the one load
    while load.calls == 0:
        await asyncio.sleep(0)
    load.release.set()
    entries = await asyncio.gather(*readers)
    assert load.calls == 1
    assert {e.body for e in entries if e is not None} == {b'{"id":1,"name":"lamp"}'}
    assert cache.stats.misses == 50
    assert cache.stats.coalesced == 49
    assert cache.stats.loads == 1


async def test_a_reader_that_gives_up_does_not_cancel_the_load_for_the_others() -> None:
    cache = make_cache()
    load = SlowLoader({"id": 1})
    first = asyncio.ensure_future(cache.get("k", load))
    second = asyncio.ensure_future(cache.get("k", load))
    while load.calls == 0:
        await asyncio.sleep(0)
    first.cancel()
    load.release.set()
    assert (await second) is not None
    assert load.calls == 1


async def test_entries_expire_after_ttl() -> None:
    clock = Clock()
    cache = make_cache(clock, ttl=10)
    loads = 0

    async def load() -> dict[str, int]:
        nonlocal loads
        loads += 1
        return {"n": loads}

    assert (await cache.get("k", load)).body == b'{"n":1}'  # type: ignore[union-attr]
    clock.now += 9.9
    assert (await cache.get("k", load)).body == b'{"n":1}'  # type: ignore[union-attr]
    clock.now += 0.2
    assert (await cache.get("k", load)).body == b'{"n":2}'  # type: ignore[union-attr]


def test_xfetch_refreshes_earlier_for_costlier_loads_and_nearer_expiry() -> None:
    entry = Entry(1, 0, expires_at=100.0, delta=0.5, etag='"x"', body=b"{}")
    # -ln(0.5) = 0.69: with beta 1 a draw of 0.5 refreshes within 0.35 s of expiry.
    assert not entry.refresh_due(99.0, beta=1.0, draw=0.5)
    assert entry.refresh_due(99.7, beta=1.0, draw=0.5)
    assert entry.refresh_due(99.0, beta=3.0, draw=0.5)  # a higher beta refreshes earlier
    assert not entry.refresh_due(99.7, beta=0.0, draw=0.5)  # 0 turns it off


async def test_a_hot_key_is_refreshed_before_it_expires() -> None:
    clock = Clock()
    cache = make_cache(clock, ttl=10, early_refresh=1.0)
    version = 0

    async def load() -> dict[str, int]:
        nonlocal version
        version += 1
        await asyncio.sleep(0)
        return {"v": version}

    await cache.get("k", load)
    # Make the recorded load cost large so a refresh is due well before expiry.
    key_entry = await cache.backend.get_many(["k"])
    entry = Entry.decode(key_entry[0])  # type: ignore[arg-type]
    assert entry is not None
    slow = Entry(entry.epoch, entry.generation, entry.expires_at, 5.0, entry.etag, entry.body)
    await cache.backend.set("k", slow.encode(), 10)
    clock.now += 9.0  # one second before expiry, with a 5 s load: due for almost any draw
    hits_before = cache.stats.hits
    served = [await cache.get("k", load) for _ in range(20)]
    assert all(e is not None and e.body == b'{"v":1}' for e in served)  # no reader waited
    assert cache.stats.hits == hits_before + 20
    await cache.idle()
    assert cache.stats.early_refreshes >= 1
    assert (await cache.get("k", load)).body == b'{"v":2}'  # type: ignore[union-attr]
    assert version == 2  # one refresh, however many readers saw it due


async def test_a_load_that_raced_a_write_is_not_stored() -> None:
    cache = make_cache()
    load = SlowLoader({"name": "old"})
    reader = asyncio.ensure_future(cache.get(cache.item_key(1), load))
    while load.calls == 0:
        await asyncio.sleep(0)
    await cache.written(1)  # the row changes while the old value is being loaded
    load.release.set()
    assert (await reader).body == b'{"name":"old"}'  # type: ignore[union-attr]
    assert cache.stats.stale_fills_skipped == 1
    fresh = SlowLoader({"name": "new"})
    fresh.release.set()
    assert (await cache.get(cache.item_key(1), fresh)).body == b'{"name":"new"}'  # type: ignore[union-attr]


async def test_concurrent_cold_misses_of_different_keys_all_stay_cached() -> None:
    # All of them read the counters before any exists: creating them once each keeps
    # every entry filled here valid (not one epoch bump per load).
    cache = make_cache()
    loads = [SlowLoader({"id": n}) for n in range(20)]
    keys = [cache.item_key(n) for n in range(10)] + [cache.list_key(str(n)) for n in range(10)]
    readers = [
        asyncio.ensure_future(cache.get(key, load, is_list=":l:" in key))
        for key, load in zip(keys, loads, strict=True)
    ]
    while any(load.calls == 0 for load in loads):
        await asyncio.sleep(0)
    for load in loads:
        load.release.set()
    await asyncio.gather(*readers)
    for key, load in zip(keys, loads, strict=True):
        assert await cache.get(key, load, is_list=":l:" in key) is not None
    assert cache.stats.hits == 20
    assert all(load.calls == 1 for load in loads)


async def test_clear_and_list_generations() -> None:
    cache = make_cache()
    counter = 0

    async def load() -> dict[str, int]:
        nonlocal counter
        counter += 1
        return {"n": counter}

    item, page = cache.item_key(1), cache.list_key("q")
    await cache.get(item, load)
    await cache.get(page, load, is_list=True)
    await cache.written(None)  # a create: lists go, items stay
    assert (await cache.get(item, load)).body == b'{"n":1}'  # type: ignore[union-attr]
    assert (await cache.get(page, load, is_list=True)).body == b'{"n":3}'  # type: ignore[union-attr]
    await cache.clear()
    assert (await cache.get(item, load)).body == b'{"n":4}'  # type: ignore[union-attr]


async def test_an_unreachable_cache_server_falls_back_to_the_database(
    unused_tcp_port: int,
) -> None:
    config = CacheConfig(ttl=60, backend="redis")
    backend = open_backend(f"redis://127.0.0.1:{unused_tcp_port}/0?timeout=0.2")
    cache = EntityCache("Thing", "mf:t:v:Thing", config, backend)
    try:

        async def load() -> dict[str, str]:
            return {"from": "database"}

        entry = await cache.get("k", load)
        assert entry is not None
        assert entry.body == b'{"from":"database"}'
        await cache.written(1)  # invalidation failures are counted, not raised
        assert cache.stats.errors >= 2
    finally:
        await backend.aclose()


@pytest.fixture
def unused_tcp_port() -> int:
    from support.databases import free_port

    return free_port()


def test_entries_round_trip_with_their_etag() -> None:
    body = b'{"id":1}'
    entry = Entry(7, 3, expires_at=123.5, delta=0.25, etag=make_etag(body), body=body)
    assert Entry.decode(entry.encode()) == entry
    # A row's tag names its version; the largest one fits too.
    versioned = Entry(7, 3, 123.5, 0.25, row_etag({"version": 2**31 - 1}, body), body)
    assert Entry.decode(versioned.encode()) == versioned
    assert Entry.decode(b"not an entry") is None
