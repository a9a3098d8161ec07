"""Load the seed rows of a spec, idempotently.

Rows of UUID entities get ids derived from their position, so running seed twice adds
nothing. A relation may be given as `<field>: {lookup fields}` and is resolved to an id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Table, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .problems import Problem, integrity_problem, is_unstorable_value
from .repository import Repository
from .resource import Resource
from .types import utcnow

SEED_NAMESPACE = uuid.UUID("6f1c3c59-2a0e-4c55-9d51-5c0f4bd0f8a1")


class SeedError(ValueError):
    """A seed row does not fit its entity; says which row and why."""


async def load_seed(
    engine: AsyncEngine,
    resources: Iterable[Resource],
    rows: list[tuple[str, type[BaseModel], list[dict[str, Any]]]],
) -> dict[str, int]:
    by_name = {r.name: r for r in resources}
    counts: dict[str, int] = {}
    async with engine.begin() as conn:
        for name, schema, items in rows:
            resource = by_name[name]
            repo = Repository(engine, resource)
            table = resource.table
            uuid_ids = resource.id_python_type is not int
            if not uuid_ids and not any("id" in item for item in items):
                count = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
                if count:
                    counts[name] = 0
                    continue
            added = 0
            for index, raw in enumerate(items):
                values = await _resolve_lookups(conn, table, raw, f"{name}[{index}]")
                row_id = values.pop("id", None)
                if uuid_ids and row_id is None:
                    row_id = uuid.uuid5(SEED_NAMESPACE, f"{table.name}:{index}")
                try:
                    data = schema.model_validate(values).model_dump()
                except ValidationError as exc:
                    raise SeedError(f"seed row {name}[{index}]: {exc}") from None
                if row_id is not None:
                    # Soft-deleted rows count too: `repo.exists` hides them, so seeding
                    # again after deleting a seeded row re-inserted its id and failed.
                    present = select(table.c.id).where(table.c.id == row_id)
                    if (await conn.execute(present)).first() is not None:
                        continue
                    data["id"] = row_id
                now = utcnow()
                try:
                    await repo.insert(conn, {**data, "created_at": now, "updated_at": now})
                except (DBAPIError, Problem) as exc:
                    # Said which row: a duplicate unique value or a missing reference
                    # escaped as a bare driver error (the transaction is rolled back).
                    raise SeedError(f"seed row {name}[{index}]: {_refusal(exc)}") from exc
                added += 1
            counts[name] = added
    return counts


async def _resolve_lookups(
    conn: AsyncConnection, table: Table, raw: dict[str, Any], where: str
) -> dict[str, Any]:
    values = dict(raw)
    for key, value in raw.items():
        column_name = f"{key}_id"
        if not isinstance(value, dict) or column_name not in table.c:
            continue
        target = next(iter(table.c[column_name].foreign_keys)).column.table
        if not value:  # matched any single row before
            raise SeedError(f"seed row {where}: give fields to find the {target.name} row by")
        unknown = [k for k in value if k not in target.c]
        if unknown:
            raise SeedError(f"seed row {where}: {target.name} has no field {unknown[0]!r}")
        query = select(target.c.id).where(*(target.c[k] == v for k, v in value.items())).limit(2)
        found = (await conn.execute(query)).scalars().all()
        if len(found) != 1:
            what = "no" if not found else "more than one"
            raise SeedError(f"seed row {where}: {what} {target.name} row matches {value!r}")
        del values[key]
        values[column_name] = found[0]
    return values


def _refusal(exc: DBAPIError | Problem) -> str:
    if isinstance(exc, Problem):
        return exc.detail
    if isinstance(exc, IntegrityError):
        return integrity_problem(exc).detail
    if is_unstorable_value(exc):
        return f"the database cannot store a value ({exc.orig})"
    return f"the database refused the row ({exc.orig})"
