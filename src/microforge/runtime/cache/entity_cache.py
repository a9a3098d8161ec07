"""One entity's cache: keys, reads with single flight and early refresh, invalidation.

Every read is one backend round trip: the entry and the entity's counters together.
``epoch`` is bumped by a clear and ``generation`` by every write; an entry stamped with
other values is a miss. So a write invalidates every cached list page of the entity
with one counter increment, and a clear needs no key enumeration (which Memcached
cannot do).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from time import perf_counter
from typing import Any

from ..jsonio import dumps, make_etag, row_etag
from .backends import Backend, CacheUnavailable
from .config import CacheConfig
from .entry import Entry
from .flight import SingleFlight
from .rwlock import RedisReadWriteLock
from .stats import CacheStats

log = logging.getLogger("microforge.cache")

Loader = Callable[[], Awaitable[Any]]
Publish = Callable[[dict[str, Any]], Awaitable[None]]
LockFactory = Callable[[str], RedisReadWriteLock]  # entry key -> its lock


class EntityCache:
    def __init__(
        self,
        name: str,
        prefix: str,
        config: CacheConfig,
        backend: Backend,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.prefix = prefix
        self.config = config
        self.backend = backend
        self.stats = CacheStats()
        self._clock = clock
        self._epoch_key = f"{prefix}:epoch"
        self._generation_key = f"{prefix}:gen"
        self._flight: SingleFlight[Entry | None] = SingleFlight()
        self._creating: SingleFlight[int] = SingleFlight()  # counters, by key
        # Invalidations this process has seen (its own and other instances'): a load that
        # started before one is not stored, or it could put back what the write replaced.
        self._writes = 0
        self.publish: Publish | None = None  # set when an invalidation bus is configured
        self.lock: LockFactory | None = None  # set for `lock: true`

    # Keys ------------------------------------------------------------------------------

    def item_key(self, id: Any) -> str:
        return f"{self.prefix}:i:{id}"

    def list_key(self, material: str) -> str:
        digest = hashlib.blake2b(material.encode("utf-8", "surrogatepass"), digest_size=16)
        return f"{self.prefix}:l:{digest.hexdigest()}"

    # Reads -----------------------------------------------------------------------------

    async def get(
        self, key: str, load: Loader, *, is_list: bool = False, fill: bool = True
    ) -> Entry | None:
        """The entry at ``key``, loaded with ``load()`` on a miss (None: nothing to cache).

        ``fill=False`` answers hits only: a miss is None, neither loaded nor counted (the
        caller goes on to the normal path, which counts it).
        """
        counters = (self._epoch_key, self._generation_key) if is_list else (self._epoch_key,)
        try:
            raw, *values = await self.backend.get_many([key, *counters])
        except CacheUnavailable as exc:
            return await self._uncached(load, exc, is_list) if fill else None
        stamp = tuple(_counter(v) for v in values)
        entry = Entry.decode(raw) if raw is not None else None
        now = self._clock()
        if entry is not None and self._fresh(entry, stamp, now):
            self.stats.hits += 1
            if entry.refresh_due(now, self.config.early_refresh) and not self._flight.running(key):
                self.stats.early_refreshes += 1
                self._flight.start(key, lambda: self._refresh(key, load, counters, stamp, is_list))
            return entry
        if not fill:
            return None
        self.stats.misses += 1
        entry, joined = await self._flight.do(
            key, lambda: self._fill(key, load, counters, stamp, is_list)
        )
        if joined:
            self.stats.coalesced += 1
        return entry

    def _fresh(self, entry: Entry, stamp: tuple[int | None, ...], now: float) -> bool:
        if stamp[0] is None or entry.epoch != stamp[0] or now >= entry.expires_at:
            return False
        return len(stamp) == 1 or entry.generation == stamp[1]

    async def _fill(
        self,
        key: str,
        load: Loader,
        counters: tuple[str, ...],
        stamp: tuple[int | None, ...],
        is_list: bool,
    ) -> Entry | None:
        async with self._reading(key):
            writes = self._writes
            started = perf_counter()
            data = await load()
            elapsed = perf_counter() - started
            self.stats.loads += 1
            self.stats.load_seconds += elapsed
            if data is None:
                return None
            body = dumps(data)
            etag = _etag(data, body, is_list)
            try:
                epoch, generation = await self._stamp(counters, stamp)
            except CacheUnavailable as exc:
                self._failed(exc)
                return Entry(0, 0, 0.0, elapsed, etag, body)
            entry = Entry(epoch, generation, self._clock() + self.config.ttl, elapsed, etag, body)
            if self._writes != writes:
                self.stats.stale_fills_skipped += 1
            else:
                await self._set(key, entry)
            return entry

    async def _refresh(
        self,
        key: str,
        load: Loader,
        counters: tuple[str, ...],
        stamp: tuple[int | None, ...],
        is_list: bool,
    ) -> Entry | None:
        try:
            return await self._fill(key, load, counters, stamp, is_list)
        except Exception:  # a failed early refresh leaves the entry until it expires
            log.exception("early refresh of %s failed", key)
            return None

    async def _stamp(
        self, counters: tuple[str, ...], stamp: tuple[int | None, ...]
    ) -> tuple[int, int]:
        """The counter values to stamp an entry with; a missing counter is created.

        Missing when the entry was read, a counter may exist by now: the concurrent misses
        of a cold start all saw it missing, and each creating it would bump it again and
        turn the entries stamped before into misses. So it is read again, and created by
        one of them only (per process; the memory backend has nothing else to race).
        """
        values = []
        for key, value in zip(counters, stamp, strict=True):
            if value is None:
                value = _counter((await self.backend.get_many([key]))[0])
            if value is None:
                value, _ = await self._creating.do(key, partial(self.backend.incr, key))
            values.append(value)
        return values[0], values[1] if len(values) > 1 else 0

    async def _uncached(self, load: Loader, exc: Exception, is_list: bool) -> Entry | None:
        self._failed(exc)
        data = await load()
        if data is None:
            return None
        body = dumps(data)
        return Entry(0, 0, 0.0, 0.0, _etag(data, body, is_list), body)

    # Writes ----------------------------------------------------------------------------

    async def store(self, id: Any, row: Mapping[str, Any], *, lists: bool = True) -> None:
        """Write-through: the row as written becomes the cached item."""
        self._writes += 1
        self.stats.invalidations += 1
        body = dumps(row)
        try:
            epoch, _ = await self._stamp((self._epoch_key,), (None,))
            entry = Entry(epoch, 0, self._clock() + self.config.ttl, 0.0, row_etag(row, body), body)
            await self.backend.set(self.item_key(id), entry.encode(), self.config.ttl)
            if lists:
                await self.backend.incr(self._generation_key)
        except CacheUnavailable as exc:
            self._failed(exc)
        await self._announce({"op": "write" if lists else "item", "id": str(id)})

    async def written(self, id: Any | None) -> None:
        """A row changed in the database: drop its item (if any) and every list page."""
        await self._invalidate({"op": "write", "id": None if id is None else str(id)})

    async def forget(self, id: Any) -> None:
        """Drop one item (manual invalidation)."""
        await self._invalidate({"op": "item", "id": str(id)})

    async def clear(self) -> None:
        """Drop every entry of the entity, on every instance."""
        await self._invalidate({"op": "clear"})

    async def _invalidate(self, message: dict[str, Any]) -> None:
        """Apply an invalidation here and tell the other instances."""
        self._writes += 1
        self.stats.invalidations += 1
        await self._apply(message)
        await self._announce(message)

    async def received(self, message: Mapping[str, Any]) -> None:
        """An invalidation from another instance (or a resync after a lost connection)."""
        self._writes += 1
        self.stats.remote_invalidations += 1
        if not self.backend.shared:  # a shared backend already saw the change itself
            await self._apply(message)

    async def _apply(self, message: Mapping[str, Any]) -> None:
        op = message.get("op")
        try:
            if op in ("item", "write") and message.get("id") is not None:
                await self.backend.delete(self.item_key(message["id"]))
            if op == "write":
                await self.backend.incr(self._generation_key)
            elif op in ("clear", "resync"):
                await self.backend.incr(self._epoch_key)
        except CacheUnavailable as exc:
            # The database has the change but the cache may still hold the old entry
            # until its ttl passes: say so loudly.
            self._failed(exc)
            log.warning("could not invalidate %s in the cache: %s", self.name, exc)

    async def _announce(self, message: dict[str, Any]) -> None:
        if self.publish is not None:
            try:
                await self.publish({**message, "entity": self.name})
            except Exception:
                log.warning("could not publish a %s invalidation", self.name, exc_info=True)

    async def _set(self, key: str, entry: Entry) -> None:
        try:
            await self.backend.set(key, entry.encode(), self.config.ttl)
        except CacheUnavailable as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.stats.errors += 1
        log.debug("cache unavailable for %s: %s", self.name, exc)

    # Locks -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _reading(self, key: str) -> AsyncIterator[None]:
        if self.lock is None:
            yield
            return
        async with self.lock(key).read():
            yield

    @contextlib.asynccontextmanager
    async def writing(self, id: Any) -> AsyncIterator[None]:
        """Around a database write and its cache update, with ``lock: true``: no load of
        the same item can run in between, on any instance."""
        if self.lock is None:
            yield
            return
        async with self.lock(self.item_key(id)).write():
            yield

    async def idle(self) -> None:
        """Until background refreshes have finished."""
        await self._flight.wait()


def _etag(data: Any, body: bytes, is_list: bool) -> str:
    """The ETag the uncached path gives the same body: items carry their row's version."""
    return make_etag(body) if is_list else row_etag(data, body)


def _counter(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None
