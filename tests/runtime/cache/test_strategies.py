"""Each caching strategy, on a real database: what is read and written, in which order,
and what a reader sees after a write (docs/caching.md has the same table)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import QueryParams

from microforge.runtime.auth.policy import RowScope
from microforge.runtime.cache.backends import open_backend
from microforge.runtime.cache.config import STRATEGIES, CacheConfig
from microforge.runtime.cache.entity_cache import EntityCache
from microforge.runtime.cache.repository import CachedRepository
from microforge.runtime.cache.stats import CacheStats
from microforge.runtime.cache.write_back import WriteBehind
from microforge.runtime.jsonio import Payload
from microforge.runtime.preconditions import Stale
from microforge.runtime.query import parse_list_query
from microforge.runtime.repository import Repository
from microforge.runtime.resource import Resource

from .recording import Recorder, RecordingBackend, metadata, products

GET_MISS = ["cache.get", "db.select", "cache.set"]
GET_HIT = ["cache.get"]


class Stack:
    def __init__(self, repo: CachedRepository, recorder: Recorder, engine: AsyncEngine) -> None:
        self.repo = repo
        self.recorder = recorder
        self.engine = engine

    @property
    def log(self) -> list[str]:
        return self.recorder.log

    async def stored_name(self, id: Any) -> str:
        """The name as the database holds it, read past the cache."""
        async with self.engine.connect() as conn:
            result = await conn.execute(sa.select(products.c.name).where(products.c.id == id))
            name: str = result.scalar_one()
        return name

    async def read_name(self, id: Any, scope: RowScope | None = None) -> str | None:
        payload = await self.repo.read_one(id, scope)
        return None if payload is None else str(payload.data()["name"])


async def make_stack(engine: AsyncEngine, strategy: str, **options: Any) -> Stack:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    recorder = Recorder()
    recorder.watch(engine, "cache_products")
    config = CacheConfig(strategy=strategy, early_refresh=0, **options)
    backend = RecordingBackend(open_backend("memory://", capacity=100), recorder)
    cache = EntityCache("Product", "mf:test:v1:Product", config, backend)
    resource = Resource(name="Product", table=products, sortable=("name",), cache=config)
    # The entity's counters exist from the first write or clear on; make them now so the
    # logs below show steady-state traffic.
    await cache.clear()
    await cache.written(None)
    recorder.clear()
    # A plain AsyncEngine over the same connections: PostgreSQL's asyncpg fast path for
    # GET by id would skip the SQLAlchemy events the recorder listens to.
    plain = AsyncEngine(engine.sync_engine)
    return Stack(CachedRepository(plain, resource, cache), recorder, engine)


@pytest.fixture(params=STRATEGIES)
async def stack(request: pytest.FixtureRequest, engine: AsyncEngine) -> AsyncIterator[Stack]:
    built = await make_stack(engine, request.param, write_back_delay=0.2)
    yield built
    await built.repo.aclose()


async def test_reads_fill_on_a_miss_and_hit_after(stack: Stack) -> None:
    row = await stack.repo.create({"name": "lamp", "price": 10, "owner": "ann"})
    await stack.repo.cache.forget(row["id"])
    stack.recorder.clear()

    assert await stack.read_name(row["id"]) == "lamp"
    assert stack.log == GET_MISS
    stack.recorder.clear()
    assert await stack.read_name(row["id"]) == "lamp"
    assert stack.log == GET_HIT
    assert stack.repo.cache.stats.hits == 1
    assert stack.repo.cache.stats.misses == 1


async def test_update_order_and_what_a_reader_sees(stack: Stack) -> None:
    strategy = stack.repo.config.strategy
    row = await stack.repo.create({"name": "lamp", "price": 10, "owner": "ann"})
    await stack.read_name(row["id"])  # cached
    stack.recorder.clear()

    updated = await stack.repo.update(row["id"], {"name": "desk"})
    assert updated is not None
    assert updated["name"] == "desk"
    writes = [entry for entry in stack.log if entry != "db.select"]  # MariaDB reads back
    if strategy == "write-back":
        # The cache now, the database later: nothing reached the database yet.
        assert writes == ["cache.get", "cache.get", "cache.set"]
        assert await stack.stored_name(row["id"]) == "lamp"
    elif strategy == "write-through":
        assert writes == ["db.update", "cache.get", "cache.set", "cache.incr"]
    else:  # cache-aside, read-through, write-around: the database, then drop the entry
        assert writes == ["db.update", "cache.delete", "cache.incr"]
    stack.recorder.clear()

    assert await stack.read_name(row["id"]) == "desk"  # no reader sees the old row
    if strategy in ("write-back", "write-through"):
        assert stack.log == GET_HIT
    else:
        assert stack.log == GET_MISS

    if strategy == "write-back":
        # Within write_back.delay (0.2 s) the change reaches the database.
        deadline = time.monotonic() + 5
        while await stack.stored_name(row["id"]) != "desk":
            assert time.monotonic() < deadline, "write-back never flushed"
            await asyncio.sleep(0.02)
        assert stack.repo.cache.stats.write_back_flushed == 1


async def test_create_is_cached_only_by_the_writing_strategies(stack: Stack) -> None:
    stack.recorder.clear()
    row = await stack.repo.create({"name": "lamp", "price": 10, "owner": "ann"})
    stack.recorder.clear()
    assert await stack.read_name(row["id"]) == "lamp"
    cached_on_write = stack.repo.config.strategy in ("write-through", "write-back")
    assert stack.log == (GET_HIT if cached_on_write else GET_MISS)


async def test_delete_drops_the_entry(stack: Stack) -> None:
    row = await stack.repo.create({"name": "lamp", "price": 10, "owner": "ann"})
    await stack.read_name(row["id"])
    assert await stack.repo.delete(row["id"])
    assert await stack.read_name(row["id"]) is None


async def test_lists_are_invalidated_by_writes(stack: Stack) -> None:
    params = QueryParams("sort=name")
    query = parse_list_query(params, stack.repo.resource)

    async def names() -> list[str]:
        page = await stack.repo.read_page(query, None, params)
        return [item["name"] for item in page.data()["items"]]

    first = await stack.repo.create({"name": "b-lamp", "price": 10, "owner": "ann"})
    assert await names() == ["b-lamp"]
    stack.recorder.clear()
    assert await names() == ["b-lamp"]
    assert stack.log == GET_HIT  # the page came from the cache

    await stack.repo.create({"name": "a-desk", "price": 20, "owner": "ann"})
    assert await names() == ["a-desk", "b-lamp"]
    await stack.repo.update(first["id"], {"name": "c-lamp"})
    if stack.repo.write_behind is not None:
        await stack.repo.write_behind.flush()  # write-back lists follow at the flush
    assert await names() == ["a-desk", "c-lamp"]
    await stack.repo.delete(first["id"])
    assert await names() == ["a-desk"]


async def test_a_cached_row_never_reaches_a_caller_outside_its_scope(stack: Stack) -> None:
    row = await stack.repo.create({"name": "ann's", "price": 10, "owner": "ann"})
    ann, bob = RowScope(equals=(("owner", "ann"),)), RowScope(equals=(("owner", "bob"),))
    assert await stack.read_name(row["id"], ann) == "ann's"  # now cached
    stack.recorder.clear()
    assert await stack.read_name(row["id"], bob) is None
    assert stack.log == GET_HIT  # answered from the cache, and still refused

    # Lists are keyed by scope: bob's page is his own, not ann's cached one.
    params = QueryParams("")
    query = parse_list_query(params, stack.repo.resource)
    ann_page = await stack.repo.read_page(query, ann, params)
    bob_page = await stack.repo.read_page(query, bob, params)
    assert [i["name"] for i in ann_page.data()["items"]] == ["ann's"]
    assert bob_page.data()["items"] == []


async def test_write_back_flushes_on_close(engine: AsyncEngine) -> None:
    stack = await make_stack(engine, "write-back", write_back_delay=60)
    row = await stack.repo.create({"name": "lamp", "price": 10, "owner": "ann"})
    await stack.repo.update(row["id"], {"name": "desk"})
    await stack.repo.update(row["id"], {"price": 12})
    assert await stack.stored_name(row["id"]) == "lamp"
    await stack.repo.aclose()  # what a graceful shutdown does
    assert await stack.stored_name(row["id"]) == "desk"
    assert stack.repo.cache.stats.write_back_flushed == 1  # two changes, one row written


async def test_write_back_backpressure_flushes_when_full(engine: AsyncEngine) -> None:
    stack = await make_stack(engine, "write-back", write_back_delay=60, write_back_max_pending=2)
    rows = [
        await stack.repo.create({"name": f"r{n}", "price": n, "owner": "ann"}) for n in range(3)
    ]
    for row in rows:
        await stack.repo.update(row["id"], {"price": 99})
    assert stack.repo.write_behind is not None
    assert len(stack.repo.write_behind.pending) == 1  # the third write waited for a flush
    assert stack.repo.cache.stats.write_back_flushed == 2
    await stack.repo.aclose()


async def test_fifty_concurrent_misses_read_the_database_once(engine: AsyncEngine) -> None:
    stack = await make_stack(engine, "read-through")
    row = await stack.repo.create({"name": "lamp", "price": 10, "owner": "ann"})
    await stack.repo.cache.forget(row["id"])
    stack.recorder.clear()
    names = await asyncio.gather(*(stack.read_name(row["id"]) for _ in range(50)))
    assert names == ["lamp"] * 50
    assert stack.log.count("db.select") == 1
    assert stack.repo.cache.stats.coalesced == 49
    await stack.repo.aclose()


async def test_if_match_with_every_strategy(stack: Stack) -> None:
    row = await stack.repo.create({"name": "lamp", "price": 10, "owner": "ann"})
    id = row["id"]
    first = await stack.repo.read_one(id)
    assert first is not None
    assert first.etag.startswith('"v1-')
    changed = await stack.repo.update(id, {"name": "desk"}, expected=frozenset({1}))
    assert changed is not None
    assert changed["version"] == 2
    with pytest.raises(Stale) as caught:
        await stack.repo.update(id, {"name": "chair"}, expected=frozenset({1}))
    assert caught.value.current == 2
    with pytest.raises(Stale):
        await stack.repo.delete(id, expected=frozenset({1}))

    cached = await stack.repo.read_one(id)
    assert cached is not None
    assert (cached.data()["name"], cached.data()["version"]) == ("desk", 2)
    # The PATCH response's ETag is the next GET's, wherever that GET is answered from.
    assert cached.etag == Payload.row(changed).etag
    if stack.repo.write_behind is not None:
        await stack.repo.write_behind.flush()
    uncached = await Repository(stack.engine, stack.repo.resource).read_one(id)
    assert uncached is not None
    assert (uncached.body, uncached.etag) == (cached.body, cached.etag)
    assert await stack.repo.delete(id, expected=frozenset({2}))


async def test_write_back_gives_the_cached_row_its_version_and_flushes_that(
    engine: AsyncEngine,
) -> None:
    stack = await make_stack(engine, "write-back", write_back_delay=60)
    row = await stack.repo.create({"name": "lamp", "price": 10, "owner": "ann"})
    id = row["id"]
    await stack.repo.update(id, {"name": "desk"}, expected=frozenset({1}))
    queued = await stack.repo.update(id, {"price": 12}, expected=frozenset({2}))
    assert queued is not None
    assert (queued["name"], queued["version"]) == ("desk", 3)
    with pytest.raises(Stale) as caught:  # checked against the pending version
        await stack.repo.update(id, {"price": 13}, expected=frozenset({2}))
    assert caught.value.current == 3

    async def one_writer(n: int) -> bool:
        try:
            await stack.repo.update(id, {"price": n}, expected=frozenset({3}))
        except Stale:
            return False
        return True

    # Writers holding one ETag: one wins, though nothing reaches the database yet.
    assert sorted(await asyncio.gather(*(one_writer(n) for n in range(5)))) == [False] * 4 + [True]
    assert await stack.stored_name(id) == "lamp"
    await stack.repo.aclose()
    async with engine.connect() as conn:
        query = sa.select(products.c.name, products.c.version).where(products.c.id == id)
        assert tuple((await conn.execute(query)).one()) == ("desk", 4)  # written, not bumped


async def test_write_back_rows_being_flushed_still_overlay_reads() -> None:
    release = asyncio.Event()
    written: list[dict[str, Any]] = []

    async def flush_one(id: Any, changes: dict[str, Any]) -> dict[str, Any] | None:
        await release.wait()
        written.append(changes)
        return None

    async def flushed(done: list[Any], failed: list[Any]) -> None:
        pass

    behind = WriteBehind(flush_one, flushed, delay=60, max_pending=10, stats=CacheStats())
    behind.add(1, {"name": "desk", "version": 2})
    flushing = asyncio.ensure_future(behind.flush())
    deadline = time.monotonic() + 5
    while behind.pending:  # until the flush took the batch
        assert time.monotonic() < deadline, "the flush never started"
        await asyncio.sleep(0.01)
    # A cache miss now loads the old row from the database: the batch still shows.
    seen = behind.overlay(1, {"name": "lamp", "version": 1})
    assert seen is not None
    assert (seen["name"], seen["version"]) == ("desk", 2)
    release.set()
    await flushing
    assert behind.changes(1) == {}
    assert [w["version"] for w in written] == [2]
