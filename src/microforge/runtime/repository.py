"""Data access for one entity with SQLAlchemy Core: no ORM unit of work on the hot path.

Statements that do not depend on the request are built once; SQLAlchemy caches their
compiled form, so a GET is one pooled connection, one prepared query and one JSON dump.

Every read and write takes an optional :class:`RowScope` (from the entity's policy): its
conditions are ANDed into the statement, so a row outside the caller's scope behaves
exactly like a missing one. Scoped statements are built once per scope *shape* (which
columns, not which values) and the values bound as parameters.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Float,
    Select,
    bindparam,
    delete,
    func,
    insert,
    null,
    select,
    update,
)
from sqlalchemy.engine import Dialect, RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.datastructures import QueryParams

from .auth.policy import RowScope
from .db import ServiceEngine
from .ids import uuid7
from .jsonio import Payload
from .preconditions import Stale
from .problems import Problem
from .query import ListQuery, _exact_text, after_condition, encode_cursor, order_by
from .resource import INT64, Link, Resource, integer_bounds
from .transaction import begin, connect, joined
from .types import utcnow

Row = dict[str, Any]
BindProcessor = Callable[[Any], Any]
_SCOPE_PLAN_LIMIT = 64  # shapes per entity; a policy makes two or three


@dataclass(frozen=True, slots=True)
class _ScopePlan:
    """The statements of one scope shape; values are bound as ``_scope_<n>`` parameters."""

    names: tuple[str, ...]  # bind names, in RowScope.values order
    clauses: tuple[ColumnElement[bool], ...]
    get: Select[Any]
    exists: Select[Any]
    # (value position, low, high) for integer columns, and the positions of text values:
    # a value no row can hold answers "no rows" instead of a driver error.
    bounds: tuple[tuple[int, int, int], ...]
    texts: tuple[int, ...]
    driver_get: str | None  # asyncpg SQL of ``get``
    driver_order: tuple[int, ...]  # $n -> position in (id, *values)
    driver_processors: tuple[BindProcessor | None, ...]  # per $n

    def reachable(self, values: Sequence[Any]) -> bool:
        for position, low, high in self.bounds:
            value = values[position]
            if isinstance(value, int) and not low <= value <= high:
                return False
        for position in self.texts:
            value = values[position]
            if isinstance(value, str) and "\x00" in value:
                return False
        return True

    def params(self, values: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(self.names, values, strict=True))

    def driver_args(self, id: Any, values: Sequence[Any]) -> list[Any]:
        combined = (id, *values)
        args = []
        for position, process in zip(self.driver_order, self.driver_processors, strict=True):
            value = combined[position]
            args.append(value if process is None else process(value))
        return args


@dataclass(frozen=True, slots=True)
class _Bound:
    """A scope ready for one statement: its conditions and their parameter values."""

    plan: _ScopePlan | None
    clauses: tuple[ColumnElement[bool], ...] = ()
    params: dict[str, Any] | None = None


_UNSCOPED = _Bound(None)


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
        self._version = resource.version_column
        self._json_columns = frozenset(c.name for c in table.c if isinstance(c.type, JSON))
        self._float_columns = tuple(c.name for c in table.c if isinstance(c.type, Float))
        self._integer_bounds = {
            c.name: bounds for c in table.c if (bounds := integer_bounds(c.type)) is not None
        }
        self._id_bounds = integer_bounds(resource.id_column.type)
        self._driver_get = _driver_sql(engine, self._get)
        self._plans: dict[Hashable, _ScopePlan] = {}

    def _may_exist(self, id: Any) -> bool:
        """False for an integer id outside the id column's range: no row has it.

        Path ids are any int to FastAPI; binding 2**63 failed in SQLite's driver and
        2**31 in asyncpg (int4), so GET /things/9223372036854775808 answered 500.
        """
        bounds = self._id_bounds
        return bounds is None or not _is_integer(id) or bounds[0] <= id <= bounds[1]

    def _driver_engine(self) -> ServiceEngine | None:
        """The engine whose asyncpg pool a GET may take: not inside a transaction, whose
        own writes only its connection sees."""
        engine = self.engine
        if isinstance(engine, ServiceEngine) and joined(engine) is None:
            return engine
        return None

    # Reads -----------------------------------------------------------------------------

    async def get(self, id: Any, scope: RowScope | None = None) -> Row | None:
        if scope is not None and not scope.unrestricted:
            return await self._get_scoped(id, scope)
        if not self._may_exist(id):
            return None
        if self._driver_get is not None and (engine := self._driver_engine()):
            pool = await engine.driver_pool()
            if pool is not None:
                # asyncpg returns the values SQLAlchemy would (same JSON codecs); the
                # contract tests run both paths on PostgreSQL and hold them equal.
                record = await pool.fetchrow(self._driver_get, id)
                return dict(record) if record is not None else None
        async with connect(self._reader) as conn:
            row = (await conn.execute(self._get, {"id": id})).mappings().first()
        return dict(row) if row is not None else None

    async def _get_scoped(self, id: Any, scope: RowScope) -> Row | None:
        plan = self._reachable_plan(scope)
        if plan is None or not self._may_exist(id):
            return None
        values = scope.values
        if plan.driver_get is not None and (engine := self._driver_engine()):
            pool = await engine.driver_pool()
            if pool is not None:
                record = await pool.fetchrow(plan.driver_get, *plan.driver_args(id, values))
                return dict(record) if record is not None else None
        async with connect(self._reader) as conn:
            result = await conn.execute(plan.get, {"id": id, **plan.params(values)})
            row = result.mappings().first()
        return dict(row) if row is not None else None

    async def list(self, query: ListQuery, scope: RowScope | None = None) -> dict[str, Any]:
        bound = self._bind(scope)
        if bound is None:
            return {"items": [], "total": 0, "next_cursor": None}
        conditions = (*bound.clauses, *query.conditions)
        filtered = self._select.where(*conditions)
        page = filtered.order_by(*order_by(query.sort, self.resource)).limit(query.limit + 1)
        if query.after is not None:
            page = page.where(after_condition(query.sort, query.after, self.resource))
        elif query.offset:
            page = page.offset(query.offset)
        count = select(func.count()).select_from(self._table).where(*self._live, *conditions)
        async with connect(self._reader) as conn:
            rows = [dict(r) for r in (await conn.execute(page, bound.params)).mappings()]
            total = (await conn.execute(count, bound.params)).scalar_one()
        next_cursor = None
        if len(rows) > query.limit:
            rows.pop()
            next_cursor = encode_cursor(rows[-1], query.sort)
        return {"items": rows, "total": total, "next_cursor": next_cursor}

    # Responses: what the routes serve. An uncached repository encodes what it read; the
    # cached one (runtime.cache.repository) answers from the cache.

    async def read_one(self, id: Any, scope: RowScope | None = None) -> Payload | None:
        row = await self.get(id, scope)
        return None if row is None else Payload.row(row)

    async def read_page(
        self, query: ListQuery, scope: RowScope | None = None, params: QueryParams | None = None
    ) -> Payload:
        """A list page; ``params`` are the request's query parameters (a cache key)."""
        return Payload.of(await self.list(query, scope))

    async def exists(
        self, id: Any, conn: AsyncConnection | None = None, *, scope: RowScope | None = None
    ) -> bool:
        bound = self._bind(scope)
        if bound is None or not self._may_exist(id):
            return False
        statement, params = self._exists, {"id": id}
        if bound.plan is not None:
            statement, params = bound.plan.exists, {"id": id, **(bound.params or {})}
        if conn is not None:
            return (await conn.execute(statement, params)).first() is not None
        async with connect(self._reader) as own:
            return (await own.execute(statement, params)).first() is not None

    async def visible(self, id: Any, scope: RowScope | None = None) -> bool:
        """Whether the row ``id`` exists within ``scope``: for relation fields pointing
        at this entity (a row the caller cannot see is reported like a missing one)."""
        return await self.exists(id, scope=scope)

    # Writes ----------------------------------------------------------------------------

    async def create(self, values: Mapping[str, Any]) -> Row:
        now = utcnow()
        data = {**values, "created_at": now, "updated_at": now}
        if self._uuid_ids and data.get("id") is None:
            data["id"] = uuid7()
        async with begin(self.engine) as conn:
            return await self.insert(conn, data)

    def _returned(self, row: RowMapping) -> Row:
        """A row from RETURNING, exactly as a SELECT gives it.

        SQLite keeps whole numbers of REAL columns as integers and its RETURNING hands them
        out so (1, not 1.0): the response, its ETag and a cached copy of the row would
        differ from the next GET's.
        """
        returned = dict(row)
        for name in self._float_columns:
            if type(returned.get(name)) is int:
                returned[name] = float(returned[name])
        return returned

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
        if self._version is not None:
            data = {"version": 1, **data}
        statement = insert(self._table).values(self._storable(data))
        if conn.dialect.insert_returning:
            row = (await conn.execute(statement.returning(*self.resource.read_columns))).mappings()
            return self._returned(row.one())
        result = await conn.execute(statement)
        new_id = data.get("id") or result.inserted_primary_key[0]  # type: ignore[index]
        fetched = (await conn.execute(self._get, {"id": new_id})).mappings().one()
        return dict(fetched)

    async def update(
        self,
        id: Any,
        changes: Mapping[str, Any],
        scope: RowScope | None = None,
        *,
        expected: frozenset[int] | None = None,
    ) -> Row | None:
        """Change the row and bump its version; None if there is no such row in ``scope``.

        With ``expected`` (the versions an If-Match named) the row changes only if it is
        at one of them, checked by the UPDATE itself; else :class:`Stale` (412) says
        which version it is at. Without changes nothing is written (nor bumped), but the
        precondition still holds: an empty PATCH with a stale If-Match is refused too.
        """
        bound = self._bind(scope)
        if bound is None or not self._may_exist(id):
            return None
        if not changes:
            current = await self.get(id, scope)
            if current is not None and expected is not None:
                self._check(id, current.get("version"), expected)
            return current
        # ``changes`` may carry updated_at and version: write-back flushes keep the time
        # of the write and the version its cached row was given.
        data: dict[str, Any] = self._storable({"updated_at": utcnow(), **changes})
        if self._version is not None and "version" not in data:
            data["version"] = self._version + 1
        statement = (
            update(self._table)
            .where(self.resource.id_column == id, *self._live, *bound.clauses)
            .where(*self._matching(expected))
            .values(data)
        )
        async with begin(self.engine) as conn:
            if conn.dialect.update_returning:
                # The row as changed, even when the change moves it out of the scope.
                returned = statement.returning(*self.resource.read_columns)
                row = (await conn.execute(returned, bound.params)).mappings().first()
                if row is None and expected is not None:
                    await self._refuse(conn, id, bound, expected)
                return self._returned(row) if row is not None else None
            result = await conn.execute(statement, bound.params)
            if result.rowcount == 0:
                if expected is not None:
                    await self._refuse(conn, id, bound, expected)
                # MariaDB reports 0 matched rows when nothing changed (a table without a
                # version): check existence, an unchanged row is still in the scope.
                if not await self.exists(id, conn, scope=scope):
                    return None
            fetched = (await conn.execute(self._get, {"id": id})).mappings().first()
            return dict(fetched) if fetched is not None else None

    async def delete(
        self, id: Any, scope: RowScope | None = None, *, expected: frozenset[int] | None = None
    ) -> bool:
        """Delete (or soft-delete) the row; False if there is none in ``scope``.
        ``expected`` as for :meth:`update`."""
        bound = self._bind(scope)
        if bound is None or not self._may_exist(id):
            return False
        matching = self._matching(expected)
        async with begin(self.engine) as conn:
            if self.resource.deleted_column is not None:
                values: dict[str, Any] = {"deleted_at": utcnow()}
                if self._version is not None:
                    values["version"] = self._version + 1
                statement: Any = (
                    update(self._table)
                    .where(self.resource.id_column == id, *self._live, *bound.clauses)
                    .where(*matching)
                    .values(values)
                )
            else:
                statement = delete(self._table).where(
                    self.resource.id_column == id, *bound.clauses, *matching
                )
            result = await conn.execute(statement, bound.params)
            if not result.rowcount and expected is not None:
                await self._refuse(conn, id, bound, expected)
            return bool(result.rowcount)

    # Versions --------------------------------------------------------------------------

    def _versioned(self) -> Column[Any]:
        if self._version is None:
            raise TypeError(f"{self.resource.name} has no version column to check If-Match")
        return self._version

    def _matching(self, expected: frozenset[int] | None) -> tuple[ColumnElement[bool], ...]:
        """The condition of a write under If-Match: the row is at an expected version."""
        if expected is None:
            return ()
        return (self._versioned().in_(sorted(expected)),)

    async def _refuse(
        self, conn: AsyncConnection, id: Any, bound: _Bound, expected: frozenset[int]
    ) -> None:
        """After a conditional write matched nothing: Stale if the row is there (at another
        version); returns if it is missing, which the caller reports as such."""
        # A locking read sees the latest committed version even where the transaction
        # reads from an older snapshot (MariaDB's REPEATABLE READ).
        statement = (
            select(self._versioned())
            .where(self.resource.id_column == id, *self._live, *bound.clauses)
            .with_for_update()
        )
        current = (await conn.execute(statement, bound.params)).scalar_one_or_none()
        if current is not None:
            raise Stale(self.resource.name, id, expected, current)

    def _check(self, id: Any, current: Any, expected: frozenset[int]) -> None:
        """Stale unless a row read at version ``current`` meets ``expected``."""
        self._versioned()
        if current not in expected:
            raise Stale(self.resource.name, id, expected, current)

    # Many-to-many links ------------------------------------------------------------------

    # ``scope`` limits the source rows (this entity), ``target_scope`` the rows linked to:
    # a source outside its scope is 404 like a missing one, targets outside theirs are
    # neither listed nor counted, and cannot be linked or unlinked.

    async def list_links(
        self,
        link: Link,
        target: Repository,
        id: Any,
        limit: int,
        offset: int,
        *,
        scope: RowScope | None = None,
        target_scope: RowScope | None = None,
    ) -> dict[str, Any] | None:
        if self._bind(scope) is None:
            return None
        target_bound = target._bind(target_scope)
        link_table = link.table
        on = link_table.c[link.target_column] == target.resource.id_column
        source = link_table.c[link.source_column] == id
        async with connect(self.engine) as conn:
            if not await self.exists(id, conn, scope=scope):
                return None
            if target_bound is None:
                return {"items": [], "total": 0, "next_cursor": None}
            joined = target._select.join(link_table, on).where(source, *target_bound.clauses)
            count = (
                select(func.count())
                .select_from(link_table.join(target._table, on))
                .where(source, *target._live, *target_bound.clauses)
            )
            page = joined.order_by(target.resource.id_column).limit(limit).offset(offset)
            params = target_bound.params
            rows = [dict(r) for r in (await conn.execute(page, params)).mappings()]
            total = (await conn.execute(count, params)).scalar_one()
        return {"items": rows, "total": total, "next_cursor": None}

    async def add_link(
        self,
        link: Link,
        target: Repository,
        id: Any,
        target_id: Any,
        *,
        scope: RowScope | None = None,
        target_scope: RowScope | None = None,
    ) -> None:
        async with begin(self.engine) as conn:
            await self._require(conn, id, scope, target, target_id, target_scope)
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

    async def remove_link(
        self,
        link: Link,
        target: Repository,
        id: Any,
        target_id: Any,
        *,
        scope: RowScope | None = None,
        target_scope: RowScope | None = None,
    ) -> bool:
        async with begin(self.engine) as conn:
            await self._require(conn, id, scope, target, target_id, target_scope)
            result = await conn.execute(
                delete(link.table).where(
                    link.table.c[link.source_column] == id,
                    link.table.c[link.target_column] == target_id,
                )
            )
            return bool(result.rowcount)

    async def _require(
        self,
        conn: AsyncConnection,
        id: Any,
        scope: RowScope | None,
        target: Repository,
        target_id: Any,
        target_scope: RowScope | None,
    ) -> None:
        if not await self.exists(id, conn, scope=scope):
            raise Problem(404, f"No {self.resource.name} with id {id}.")
        if not await target.exists(target_id, conn, scope=target_scope):
            raise Problem(404, f"No {target.resource.name} with id {target_id}.")

    # Scopes ------------------------------------------------------------------------------

    def _bind(self, scope: RowScope | None) -> _Bound | None:
        """``scope`` ready to AND into a statement; None when it matches no row, which is
        known without the database (an empty scope, or a value no column can hold)."""
        if scope is None or scope.unrestricted:
            return _UNSCOPED
        plan = self._reachable_plan(scope)
        if plan is None:
            return None
        return _Bound(plan, plan.clauses, plan.params(scope.values))

    def _reachable_plan(self, scope: RowScope) -> _ScopePlan | None:
        """The plan of a restricting ``scope``, or None when it matches no row."""
        if scope.empty:
            return None
        plan = self._plans.get(scope.shape)
        if plan is None:
            plan = self._plan(scope)
        return plan if plan.reachable(scope.values) else None

    def _plan(self, scope: RowScope) -> _ScopePlan:
        columns = [name for name, _ in scope.equals]
        for name, values in scope.any_of:
            columns.extend([name] * len(values))
        unknown = [name for name in columns if name not in self._table.c]
        if unknown:
            raise ValueError(f"{self.resource.name} has no column {unknown[0]!r} to scope by")
        names = tuple(f"_scope_{n}" for n in range(len(columns)))
        params = [
            bindparam(name, type_=self._table.c[column].type)
            for name, column in zip(names, columns, strict=True)
        ]
        clauses: list[ColumnElement[bool]] = []
        position = 0
        for name, _ in scope.equals:
            clauses.append(self._equal(name, params[position]))
            position += 1
        for name, values in scope.any_of:
            clauses.append(self._one_of(name, params[position : position + len(values)]))
            position += len(values)
        get = self._get.where(*clauses)
        bounds = []
        texts = []
        for position, column in enumerate(columns):
            if (limits := self._integer_bounds.get(column)) is not None:
                bounds.append((position, *limits))
            if self._is_text(column):
                texts.append(position)
        driver = _driver_plan(self.engine, get, names)
        plan = _ScopePlan(
            names=names,
            clauses=tuple(clauses),
            get=get,
            exists=self._exists.where(*clauses),
            bounds=tuple(bounds),
            texts=tuple(texts),
            driver_get=driver[0] if driver else None,
            driver_order=driver[1] if driver else (),
            driver_processors=driver[2] if driver else (),
        )
        if len(self._plans) >= _SCOPE_PLAN_LIMIT:
            self._plans.clear()
        self._plans[scope.shape] = plan
        return plan

    def _equal(self, name: str, param: Any) -> ColumnElement[bool]:
        column = self._table.c[name]
        if self._is_text(name):
            # Exact on MariaDB too, whose collations ignore case and trailing spaces: a
            # tenant 'Acme' must not reach the rows of tenant 'acme '.
            return _exact_text(column, lambda c: c == param, use_index=True)
        equal: ColumnElement[bool] = column == param
        return equal

    def _one_of(self, name: str, params: Sequence[Any]) -> ColumnElement[bool]:
        column = self._table.c[name]
        if self._is_text(name):
            return _exact_text(column, lambda c: c.in_(params), use_index=True)
        return column.in_(params)

    def _is_text(self, name: str) -> bool:
        target = self.resource.filters.get(name)
        return target is not None and target.python_type is str


# Values some supported database (or the JSON encoder) cannot hold are refused up front,
# the same on all of them. Before, PostgreSQL refused NUL characters with an error the
# others did not raise, lone surrogates (JSON "\ud800"), integers too large for SQLite and
# datetimes beyond year 9999 in UTC failed in the drivers, and NaN or huge integers in JSON
# columns were refused by some databases or broke the response: all answered 500.
_JSON_INTEGERS = (INT64[0], 2**64 - 1)  # what orjson can write back
# orjson writes at most 254 levels, and a list page puts three around a row's value: a
# deeper document was stored, then answered 500 on every page that held it.
MAX_JSON_DEPTH = 200


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
    pending = [(document, 1)]  # a loop, not recursion: documents may nest deeply
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list | tuple) and depth > MAX_JSON_DEPTH:
            return f"may not nest deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(value, dict):
            pending.extend((key, depth + 1) for key in value)
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list | tuple):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            if (problem := _text_problem(value)) is not None:
                return problem
        elif isinstance(value, float) and not math.isfinite(value):
            return "may not contain NaN or Infinity"
        elif _is_integer(value) and not _JSON_INTEGERS[0] <= value <= _JSON_INTEGERS[1]:
            return "may not contain integers wider than 64 bits"
    return None


def _driver_plan(
    engine: AsyncEngine, statement: Select[Any], names: Sequence[str]
) -> tuple[str, tuple[int, ...], tuple[BindProcessor | None, ...]] | None:
    """A scoped GET as asyncpg SQL: the SQL, which of (id, *values) each $n takes,
    and the bind processor SQLAlchemy would apply to it; None for other drivers."""
    if engine.dialect.driver != "asyncpg":
        return None
    dialect: Dialect = engine.dialect
    compiled = statement.compile(dialect=dialect)
    positions = {"id": 0, **{name: n + 1 for n, name in enumerate(names)}}
    order = list(compiled.positiontup or ())
    if any(name not in positions for name in order):
        return None
    binds = compiled.binds
    processors = tuple(
        binds[name].type.dialect_impl(dialect).bind_processor(dialect) if name != "id" else None
        for name in order
    )
    return compiled.string, tuple(positions[name] for name in order), processors


def _driver_sql(engine: AsyncEngine, statement: Select[Any]) -> str | None:
    """The statement as asyncpg SQL ($1 = the id), or None for other drivers."""
    if engine.dialect.driver != "asyncpg":
        return None
    compiled = statement.compile(dialect=engine.dialect)
    if list(compiled.positiontup or ()) != ["id"]:
        return None
    return compiled.string
