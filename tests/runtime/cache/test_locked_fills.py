"""`lock: true`: a slow load on one instance cannot put back a row that a write on another
instance has just replaced (both share one Redis).

The race without the lock: B misses and starts loading the old row; A writes the new row
to the database and drops the cached entry; B's load finishes and stores the old row,
which every instance then serves until the ttl passes. With the lock, A's write waits for
B's load-and-store (B holds the read side), so A's invalidation comes after it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from microforge.runtime.cache.backends import open_backend
from microforge.runtime.cache.config import CacheConfig
from microforge.runtime.cache.entity_cache import EntityCache
from microforge.runtime.cache.rwlock import RedisReadWriteLock


class Row:
    """The row as the database holds it; loads read it when released."""

    def __init__(self) -> None:
        self.name = "old"
        self.loading = asyncio.Event()
        self.release = asyncio.Event()

    async def slow_load(self) -> dict[str, str]:
        seen = self.name  # read at the start, as a SELECT would
        self.loading.set()
        await self.release.wait()
        return {"name": seen}

    async def load(self) -> dict[str, str]:
        return {"name": self.name}


@pytest.fixture
async def instances(
    redis_url: str, redis_connection: redis.Redis, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[EntityCache, EntityCache]]:
    prefix = f"mf:locktest{uuid.uuid4().hex[:8]}:v:Thing"
    locked: bool = request.param
    config = CacheConfig(backend="redis", ttl=60, early_refresh=0, lock=locked)
    caches = []
    for _ in range(2):
        cache = EntityCache("Thing", prefix, config, open_backend(redis_url))
        if locked:
            cache.lock = lambda key: RedisReadWriteLock(redis_connection, f"{key}:lock")
        caches.append(cache)
    yield caches[0], caches[1]
    for cache in caches:
        await cache.backend.aclose()


async def race(a: EntityCache, b: EntityCache) -> tuple[str, bool]:
    """Run the race; return what a reader on A gets afterwards, and whether the write
    had to wait for the slow load."""
    row = Row()
    key = a.item_key(1)
    reader = asyncio.ensure_future(b.get(key, row.slow_load))
    await asyncio.wait_for(row.loading.wait(), 5)

    async def write() -> None:
        async with a.writing(1):
            row.name = "new"
            await a.written(1)

    writer = asyncio.ensure_future(write())
    done, _ = await asyncio.wait({writer}, timeout=1.0)  # unlocked, it is done at once
    row.release.set()
    await asyncio.wait_for(asyncio.gather(reader, writer), 10)
    entry = await a.get(key, row.load)
    assert entry is not None
    return entry.body.decode(), not done


@pytest.mark.parametrize("instances", [False], indirect=True)
async def test_without_the_lock_a_slow_load_puts_the_old_row_back(
    instances: tuple[EntityCache, EntityCache],
) -> None:
    assert await race(*instances) == ('{"name":"old"}', False)


@pytest.mark.parametrize("instances", [True], indirect=True)
async def test_with_the_lock_the_write_wins(instances: tuple[EntityCache, EntityCache]) -> None:
    assert await race(*instances) == ('{"name":"new"}', True)
