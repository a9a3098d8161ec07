"""A repository whose reads go through the entity's cache and whose writes keep it right.

The strategies differ only in writes (reads are the same for all five: the cache first,
the database on a miss, the loaded value stored):

==============  =====================  ===========================  =================
strategy        create                 update                       delete
==============  =====================  ===========================  =================
cache-aside     database               database, then drop item     database, then
read-through    database               database, then drop item     drop item
write-around    database               database, then drop item
write-through   database, then store   database, then store item
write-back      database, then store   cache now, database within
                                       ``write_back.delay``
==============  =====================  ===========================  =================

Every write also invalidates the entity's list pages (one counter increment), except a
write-back update, whose lists follow at its flush. Items hold the row as every caller
may see it before redaction; a read with a row scope checks the cached row against the
scope's conditions, exactly the conditions the SQL would apply, so a cached row never
reaches a caller outside its scope.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import QueryParams

from ..auth.policy import RowScope
from ..jsonio import Payload, dumps
from ..query import ListQuery, parse_list_query
from ..repository import Repository, Row
from ..resource import Resource
from ..transaction import after_commit, joined
from .entity_cache import EntityCache
from .write_back import WriteBehind

# Scope values the cached JSON row can be compared with exactly; a scope on another type
# (a decimal or a date in a `where` rule) reads from the database instead.
_COMPARABLE = (str, int, bool, uuid.UUID, type(None))


class CachedRepository(Repository):
    def __init__(self, engine: AsyncEngine, resource: Resource, cache: EntityCache) -> None:
        super().__init__(engine, resource)
        self.cache = cache
        self.config = cache.config
        self._stores_on_write = self.config.strategy in ("write-through", "write-back")
        self.write_behind: WriteBehind | None = None
        if self.config.strategy == "write-back":
            self.write_behind = WriteBehind(
                self._flush_one,
                self._flushed,
                delay=self.config.write_back_delay,
                max_pending=self.config.write_back_max_pending,
                stats=cache.stats,
            )
        # Caches of entities a delete here can change (ON DELETE CASCADE / SET NULL).
        self.dependents: Sequence[EntityCache] = ()

    # Reads -----------------------------------------------------------------------------

    async def read_one(self, id: Any, scope: RowScope | None = None) -> Payload | None:
        return await self._one(id, scope, fill=True)

    async def cached_one(self, id: Any, scope: RowScope | None = None) -> Payload | None:
        """Like read_one, but only from the cache: None on a miss (or no such row)."""
        return await self._one(id, scope, fill=False)

    async def _one(self, id: Any, scope: RowScope | None, *, fill: bool) -> Payload | None:
        if not self._may_exist(id):
            return None
        if joined(self.engine) is not None:
            # A transaction reads its own writes, which must not reach the cache before
            # they commit: it bypasses the cache.
            return await super().read_one(id, scope) if fill else None
        if scope is not None and scope.unrestricted:
            scope = None
        if scope is not None and scope.empty:
            return None
        if scope is not None and not _comparable(scope):
            return await super().read_one(id, scope) if fill else None
        key = self.cache.item_key(id)
        entry = await self.cache.get(key, lambda: self._load(id), fill=fill)
        if entry is None:
            return None
        payload = Payload(entry.body, entry.etag)
        if scope is not None and not _within(payload.data(), scope):
            return None
        return payload

    async def _load(self, id: Any) -> Row | None:
        row = await Repository.get(self, id)
        if self.write_behind is not None:
            row = self.write_behind.overlay(id, row)
        return row

    async def read_page(
        self, query: ListQuery, scope: RowScope | None = None, params: QueryParams | None = None
    ) -> Payload:
        if not self.config.lists or params is None or joined(self.engine) is not None:
            return await super().read_page(query, scope, params)
        key = self.cache.list_key(_list_material(params, scope))
        entry = await self.cache.get(key, lambda: self.list(query, scope), is_list=True)
        assert entry is not None  # a page is never None
        return Payload(entry.body, entry.etag)

    async def cached_page(self, params: QueryParams, scope: RowScope | None) -> Payload | None:
        """A list page only from the cache, before its query is parsed: a cached page's
        query was valid when it was stored. None on a miss."""
        if not self.config.lists:
            return None
        key = self.cache.list_key(_list_material(params, scope))

        async def load() -> dict[str, Any]:  # only for an early refresh of a hit
            return await self.list(parse_list_query(params, self.resource), scope)

        entry = await self.cache.get(key, load, is_list=True, fill=False)
        return None if entry is None else Payload(entry.body, entry.etag)

    async def warm(self, queries: Sequence[str], scopes: Sequence[RowScope]) -> None:
        """Load the spec's warm-up list queries for each scope (cold start)."""
        for text in queries:
            params = QueryParams(text)
            query = parse_list_query(params, self.resource)
            for scope in scopes:
                await self.read_page(query, scope, params)
                self.cache.stats.warmed += 1

    # Writes ----------------------------------------------------------------------------

    # Inside a transaction (an idempotent request), the cache changes wait for its COMMIT:
    # a rolled-back row must never reach the cache.

    async def create(self, values: Mapping[str, Any]) -> Row:
        row = await super().create(values)
        await after_commit(self.engine, partial(self._created, row))
        return row

    async def _created(self, row: Row) -> None:
        if self._stores_on_write:
            await self.cache.store(row["id"], row)
        else:
            await self.cache.written(None)

    async def update(
        self,
        id: Any,
        changes: Mapping[str, Any],
        scope: RowScope | None = None,
        *,
        expected: frozenset[int] | None = None,
    ) -> Row | None:
        if self.write_behind is not None:
            return await self._update_later(id, changes, scope, expected)
        if not changes:  # nothing is written, so the cache stays as it is
            return await super().update(id, changes, scope, expected=expected)
        if joined(self.engine) is not None:
            row = await super().update(id, changes, scope, expected=expected)
            if row is not None:
                await after_commit(self.engine, partial(self._updated, id, row))
            return row
        async with self.cache.writing(id):
            row = await super().update(id, changes, scope, expected=expected)
            if row is not None:
                await self._updated(id, row)
        return row

    async def _updated(self, id: Any, row: Row) -> None:
        if self._stores_on_write:
            await self.cache.store(id, row)
        else:
            await self.cache.written(id)

    async def delete(
        self, id: Any, scope: RowScope | None = None, *, expected: frozenset[int] | None = None
    ) -> bool:
        if self.write_behind is not None:
            # The database then holds the version the cache announced, which ``expected``
            # was read from.
            await self.write_behind.flush(only=id)
        if joined(self.engine) is not None:
            deleted = await super().delete(id, scope, expected=expected)
            if deleted:
                await after_commit(self.engine, partial(self._deleted, id))
            return deleted
        async with self.cache.writing(id):
            deleted = await super().delete(id, scope, expected=expected)
            if deleted:
                await self.cache.written(id)
        if deleted:
            await self._cascaded()
        return deleted

    async def _deleted(self, id: Any) -> None:
        await self.cache.written(id)
        await self._cascaded()

    async def _cascaded(self) -> None:
        for dependent in self.dependents:
            await dependent.clear()

    # Write-back ------------------------------------------------------------------------

    async def _update_later(
        self,
        id: Any,
        changes: Mapping[str, Any],
        scope: RowScope | None,
        expected: frozenset[int] | None,
    ) -> Row | None:
        write_behind = self.write_behind
        assert write_behind is not None
        self._storable(changes)  # a value the database would refuse is a 422 now
        current = await self.read_one(id, scope)
        if current is None:
            return None
        if changes and write_behind.full:
            await write_behind.flush()  # backpressure: this writer waits for the flush
        # From here to add() nothing awaits: the version check and the queued change are
        # one step, so two writers sending the same If-Match cannot both pass it.
        # The JSON form of the row, so the cached item reads the same as a loaded one.
        row: Row = {**current.data(), **_json_form(write_behind.changes(id))}
        version = row.get("version")
        if expected is not None:
            self._check(id, version, expected)
        if not changes:
            return row
        # The cached row gets the next version now; the flush writes exactly that one.
        bump = {} if version is None else {"version": version + 1}
        row.update(_json_form(write_behind.add(id, {**changes, **bump})))
        await self.cache.store(id, row, lists=False)
        return row

    async def _flush_one(self, id: Any, changes: Row) -> Row | None:
        return await Repository.update(self, id, changes)

    async def _flushed(self, written: list[Any], failed: list[Any]) -> None:
        for id in failed:  # readers get the database's row again
            await self.cache.forget(id)
        if written:
            await self.cache.written(None)

    async def aclose(self) -> None:
        if self.write_behind is not None:
            await self.write_behind.aclose()
        await self.cache.idle()


def _json_form(values: Mapping[str, Any]) -> Row:
    parsed: Row = orjson.loads(dumps(values))
    return parsed


def _comparable(scope: RowScope) -> bool:
    return all(isinstance(value, _COMPARABLE) for value in scope.values)


def _json(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


def _within(row: Mapping[str, Any], scope: RowScope) -> bool:
    """Whether a cached (JSON) row meets ``scope``'s conditions, compared exactly."""
    for name, value in scope.equals:
        if name not in row or row[name] != _json(value):
            return False
    for name, values in scope.any_of:
        if name not in row or row[name] not in {_json(v) for v in values}:
            return False
    return True


def _list_material(params: QueryParams, scope: RowScope | None) -> str:
    """What a list page depends on: its query (order-insensitive) and the caller's scope."""
    query = sorted(params.multi_items())
    if scope is None or scope.unrestricted:
        return repr(query)
    return repr((query, scope.shape, tuple(_json(v) for v in scope.values)))
