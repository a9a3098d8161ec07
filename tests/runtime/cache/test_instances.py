"""Several instances of one service: invalidations reach the others.

Two ``Caching`` objects over one database are two instances of a service (separate
caches, separate bus connections; only the process is shared). With the in-process
backend, a write on one reaches the other through Redis pub/sub; with Redis or
Memcached as the backend, both read the same entries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from microforge.runtime.cache.caching import Caching
from microforge.runtime.cache.config import CacheConfig
from microforge.runtime.cache.repository import CachedRepository
from microforge.runtime.db import create_engine, sqlite_url
from microforge.runtime.resource import Resource

from .recording import metadata, products

DEADLINE = 5.0


class Instance:
    def __init__(self, caching: Caching, repo: CachedRepository) -> None:
        self.caching = caching
        self.repo = repo

    async def name(self, id: object) -> str | None:
        payload = await self.repo.read_one(id)
        return None if payload is None else str(payload.data()["name"])


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(sqlite_url(tmp_path / "shared.db"))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def start(
    engine: AsyncEngine,
    backend: str,
    service: str,
    *,
    redis_url: str = "",
    memcached_url: str = "",
    bus: bool = False,
) -> Instance:
    caching = Caching(service, redis_url=redis_url, memcached_url=memcached_url, bus=bus)
    config = CacheConfig(backend=backend, ttl=300, early_refresh=0)
    repo = caching.repository(engine, Resource(name="Product", table=products, cache=config))
    assert isinstance(repo, CachedRepository)
    await caching.start()
    return Instance(caching, repo)


async def test_memory_caches_stay_fresh_through_the_bus(
    database: AsyncEngine, redis_url: str, unique_service: str
) -> None:
    a = await start(database, "memory", unique_service, redis_url=redis_url, bus=True)
    b = await start(database, "memory", unique_service, redis_url=redis_url, bus=True)
    try:
        row = await a.repo.create({"name": "lamp", "price": 1, "owner": "ann"})
        assert await b.name(row["id"]) == "lamp"  # now cached in b
        received = b.repo.cache.stats.remote_invalidations
        written_at = time.perf_counter()
        await a.repo.update(row["id"], {"name": "desk"})
        # Poll until b has heard of the write, then read: never the old row.
        while b.repo.cache.stats.remote_invalidations == received:
            assert time.perf_counter() - written_at < DEADLINE, "the invalidation never arrived"
            await asyncio.sleep(0.001)
        delay = time.perf_counter() - written_at
        assert await b.name(row["id"]) == "desk"
        print(f"invalidation reached the other instance after {delay * 1000:.1f} ms")
    finally:
        await a.caching.aclose()
        await b.caching.aclose()


async def test_without_the_bus_the_other_instance_serves_its_stale_copy(
    database: AsyncEngine, unique_service: str
) -> None:
    # Why the bus exists: the in-process caches of two instances do not know each other.
    a = await start(database, "memory", unique_service)
    b = await start(database, "memory", unique_service)
    try:
        row = await a.repo.create({"name": "lamp", "price": 1, "owner": "ann"})
        assert await b.name(row["id"]) == "lamp"
        await a.repo.update(row["id"], {"name": "desk"})
        assert await b.name(row["id"]) == "lamp"
    finally:
        await a.caching.aclose()
        await b.caching.aclose()


@pytest.mark.parametrize("backend", ["redis", "memcached"])
async def test_shared_backends_are_fresh_on_every_instance_at_once(
    database: AsyncEngine, backend: str, request: pytest.FixtureRequest, unique_service: str
) -> None:
    url = request.getfixturevalue(f"{backend}_url")
    urls = {f"{backend}_url": url}
    a = await start(database, backend, unique_service, **urls)
    b = await start(database, backend, unique_service, **urls)
    try:
        row = await a.repo.create({"name": "lamp", "price": 1, "owner": "ann"})
        assert await b.name(row["id"]) == "lamp"
        assert await a.name(row["id"]) == "lamp"
        assert a.repo.cache.stats.hits == 1  # a read what b had loaded
        await a.repo.update(row["id"], {"name": "desk"})
        assert await b.name(row["id"]) == "desk"
        await b.repo.cache.clear()
        assert await a.name(row["id"]) == "desk"
        assert a.repo.cache.stats.misses == 1  # b's clear reached a's reads
    finally:
        await a.caching.aclose()
        await b.caching.aclose()


@pytest.fixture
def unique_service() -> str:
    import uuid

    return f"svc{uuid.uuid4().hex[:10]}"  # keys and channel of this test only
