"""Data access for one entity with SQLAlchemy Core: no ORM unit of work on the hot path.

Statements that do not depend on the request are built once; SQLAlchemy caches their
compiled form, so a GET is one pooled connection, one prepared query and one JSON dump.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import JSON, Select, bindparam, delete, func, insert, null, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .db import ServiceEngine
from .ids import uuid7
from .problems import Problem
from .query import ListQuery, after_condition, encode_cursor, order_by
from .resource import INT64, Link, Resource, integer_bounds
from .types import utcnow

Row = dict[str, Any]


class Repository:
    def __init__(self, engine: AsyncEngine, resource: Resource) -> None:
        self.engine = engine
        # Reads run without BEGIN/ROLLBACK: two round trips fewer per GET. Each statement
        # then sees committed data as of its start, as under READ COMMITTED.
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.resource = resource
        table = resource.table
        self._live = [] if resource.deleted_column is None else [resource.deleted_column.is_(None)]
        self._select: Select[Any] = select(*resource.read_columns).where(*self._live)
        self._get = self._select.where(resource.id_column == bindparam("id"))
        self._exists = select(resource.id_column).where(
            resource.id_column == bindparam("id"), *self._live
        )
        self._uuid_ids = resource.id_python_type is not int
        self._table = table
        self._json_columns = frozenset(c.name for c in table.c if isinstance(c.type, JSON))
        self._integer_bounds = {
            c.name: bounds for c in table.c if (bounds := integer_bounds(c.type)) is not None
        }
        self._id_bounds = integer_bounds(resource.id_column.type)
        self._driver_get = _driver_sql(engine, self._get)

    def _may_exist(self, id: Any) -> bool:
        """False for an integer id outside the id column's range: no row has it.

        Path ids are any int to FastAPI; binding 2**63 failed in SQLite's driver and
        2**31 in asyncpg (int4), so GET /things/9223372036854775808 answered 500.
        """
        bounds = self._id_bounds
        return bounds is None or not _is_integer(id) or bounds[0] <= id <= bounds[1]

    # Reads -----------------------------------------------------------------------------

    async def get(self, id: Any) -> Row | None:
        if not self._may_exist(id):
            return None
        if self._driver_get is not None and isinstance(self.engine, ServiceEngine):
            pool = await self.engine.driver_pool()
            if pool is not None:
                # asyncpg returns the values SQLAlchemy would (same JSON codecs); the
                # contract tests run both paths on PostgreSQL and hold them equal.
                record = await pool.fetchrow(self._driver_get, id)
                return dict(record) if record is not None else None
        async with self._reader.connect() as conn:
            row = (await conn.execute(self._get, {"id": id})).mappings().first()
        return dict(row) if row is not None else None

    async def list(self, query: ListQuery) -> dict[str, Any]:
        filtered = self._select.where(*query.conditions)
        page = filtered.order_by(*order_by(query.sort, self.resource)).limit(query.limit + 1)
        if query.after is not None:
            page = page.where(after_condition(query.sort, query.after, self.resource))
        elif query.offset:
            page = page.offset(query.offset)
        count = select(func.count()).select_from(self._table).where(*self._live, *query.conditions)
        async with self._reader.connect() as conn:
            rows = [dict(r) for r in (await conn.execute(page)).mappings()]
            total = (await conn.execute(count)).scalar_one()
        next_cursor = None
        if len(rows) > query.limit:
            rows.pop()
            next_cursor = encode_cursor(rows[-1], query.sort)
        return {"items": rows, "total": total, "next_cursor": next_cursor}

    async def exists(self, id: Any, conn: AsyncConnection | None = None) -> bool:
        if not self._may_exist(id):
            return False
        if conn is not None:
            return (await conn.execute(self._exists, {"id": id})).first() is not None
        async with self._reader.connect() as own:
            return (await own.execute(self._exists, {"id": id})).first() is not None

    # Writes ----------------------------------------------------------------------------

    async def create(self, values: Mapping[str, Any]) -> Row:
        now = utcnow()
        data = {**values, "created_at": now, "updated_at": now}
        if self._uuid_ids and data.get("id") is None:
            data["id"] = uuid7()
        async with self.engine.begin() as conn:
            return await self.insert(conn, data)

    def _storable(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` ready for the database; 422 for a value one of them cannot store."""
        stored: dict[str, Any] = {}
        for name, value in data.items():
            if value is None:
                # A JSON column stores Python None as the JSON text 'null', which is not
                # SQL NULL: `field__isnull=true` missed such rows. Store SQL NULL instead.
                stored[name] = null() if name in self._json_columns else None
                continue
            if name in self._json_columns:
                problem = _json_problem(value)
            else:
                problem = _scalar_problem(value, self._integer_bounds.get(name))
            if problem is not None:
                raise Problem(422, f"'{name}' {problem}.", title="Unstorable value", field=name)
            stored[name] = value
        return stored

    async def insert(self, conn: AsyncConnection, data: Mapping[str, Any]) -> Row:
        """Insert inside a caller's transaction (used by create and by seeding)."""
        statement = insert(self._table).values(self._storable(data))
        if conn.dialect.insert_returning:
            row = (await conn.execute(statement.returning(*self.resource.read_columns))).mappings()
            return dict(row.one())
        result = await conn.execute(statement)
        new_id = data.get("id") or result.inserted_primary_key[0]  # type: ignore[index]
        fetched = (await conn.execute(self._get, {"id": new_id})).mappings().one()
        return dict(fetched)

    async def update(self, id: Any, changes: Mapping[str, Any]) -> Row | None:
        if not self._may_exist(id):
            return None
        data = self._storable({**changes, "updated_at": utcnow()})
        statement = (
            update(self._table).where(self.resource.id_column == id, *self._live).values(data)
        )
        async with self.engine.begin() as conn:
            if conn.dialect.update_returning:
                returned = statement.returning(*self.resource.read_columns)
                row = (await conn.execute(returned)).mappings().first()
                return dict(row) if row is not None else None
            result = await conn.execute(statement)
            # MariaDB reports 0 matched rows when nothing changed: check existence.
            if result.rowcount == 0 and not await self.exists(id, conn):
                return None
            fetched = (await conn.execute(self._get, {"id": id})).mappings().first()
            return dict(fetched) if fetched is not None else None

    async def delete(self, id: Any) -> bool:
        if not self._may_exist(id):
            return False
        async with self.engine.begin() as conn:
            if self.resource.deleted_column is not None:
                statement: Any = (
                    update(self._table)
                    .where(self.resource.id_column == id, *self._live)
                    .values(deleted_at=utcnow())
                )
            else:
                statement = delete(self._table).where(self.resource.id_column == id)
            result = await conn.execute(statement)
            return bool(result.rowcount)

    # Many-to-many links ------------------------------------------------------------------

    async def list_links(
        self, link: Link, target: Repository, id: Any, limit: int, offset: int
    ) -> dict[str, Any] | None:
        link_table = link.table
        joined = target._select.join(
            link_table, link_table.c[link.target_column] == target.resource.id_column
        ).where(link_table.c[link.source_column] == id)
        count = (
            select(func.count())
            .select_from(
                link_table.join(
                    target._table, link_table.c[link.target_column] == target.resource.id_column
                )
            )
            .where(link_table.c[link.source_column] == id, *target._live)
        )
        async with self.engine.connect() as conn:
            if not await self.exists(id, conn):
                return None
            page = joined.order_by(target.resource.id_column).limit(limit).offset(offset)
            rows = [dict(r) for r in (await conn.execute(page)).mappings()]
            total = (await conn.execute(count)).scalar_one()
        return {"items": rows, "total": total, "next_cursor": None}

    async def add_link(self, link: Link, target: Repository, id: Any, target_id: Any) -> None:
        async with self.engine.begin() as conn:
            await self._require(conn, id, target, target_id)
            present = select(link.table.c[link.source_column]).where(
                link.table.c[link.source_column] == id,
                link.table.c[link.target_column] == target_id,
            )
            if (await conn.execute(present)).first() is None:
                await conn.execute(
                    insert(link.table).values(
                        {link.source_column: id, link.target_column: target_id}
                    )
                )

    async def remove_link(self, link: Link, target: Repository, id: Any, target_id: Any) -> bool:
        async with self.engine.begin() as conn:
            await self._require(conn, id, target, target_id)
            result = await conn.execute(
                delete(link.table).where(
                    link.table.c[link.source_column] == id,
                    link.table.c[link.target_column] == target_id,
                )
            )
            return bool(result.rowcount)

    async def _require(
        self, conn: AsyncConnection, id: Any, target: Repository, target_id: Any
    ) -> None:
        if not await self.exists(id, conn):
            raise Problem(404, f"No {self.resource.name} with id {id}.")
        if not await target.exists(target_id, conn):
            raise Problem(404, f"No {target.resource.name} with id {target_id}.")


# Values some supported database (or the JSON encoder) cannot hold are refused up front,
# the same on all of them. Before, PostgreSQL refused NUL characters with an error the
# others did not raise, lone surrogates (JSON "\ud800"), integers too large for SQLite and
# datetimes beyond year 9999 in UTC failed in the drivers, and NaN or huge integers in JSON
# columns were refused by some databases or broke the response: all answered 500.
_JSON_INTEGERS = (INT64[0], 2**64 - 1)  # what orjson can write back


def _text_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (it contains a lone surrogate)"
    return None


def _scalar_problem(value: Any, bounds: tuple[int, int] | None) -> str | None:
    if isinstance(value, str):
        if "\x00" in value:
            return "may not contain NUL characters"
        return _text_problem(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        try:  # stored in UTC, which 9999-12-31T23:00-01:00 is beyond
            value.astimezone(dt.UTC)
        except OverflowError:
            return "cannot be expressed in UTC"
    if _is_integer(value) and bounds is not None and not bounds[0] <= value <= bounds[1]:
        return f"is out of range ({bounds[0]} to {bounds[1]})"
    return None


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_problem(document: Any) -> str | None:
    pending = [document]  # a loop, not recursion: documents may nest deeply
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)
        elif isinstance(value, str):
            if (problem := _text_problem(value)) is not None:
                return problem
        elif isinstance(value, float) and not math.isfinite(value):
            return "may not contain NaN or Infinity"
        elif _is_integer(value) and not _JSON_INTEGERS[0] <= value <= _JSON_INTEGERS[1]:
            return "may not contain integers wider than 64 bits"
    return None


def _driver_sql(engine: AsyncEngine, statement: Select[Any]) -> str | None:
    """The statement as asyncpg SQL ($1 = the id), or None for other drivers."""
    if engine.dialect.driver != "asyncpg":
        return None
    compiled = statement.compile(dialect=engine.dialect)
    if list(compiled.positiontup or ()) != ["id"]:
        return None
    return compiled.string
