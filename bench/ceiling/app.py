"""The ceiling: the catalog API on Starlette and raw asyncpg, as fast as plain Python goes.

No ORM, no SQLAlchemy, no Pydantic: an asyncpg pool made in the lifespan, fixed statement
texts that asyncpg prepares once per connection and keeps in its statement cache, rows
dumped by orjson. The same three endpoints the benchmark calls, the same tables as the
generated catalog service (bench/specs/catalog.yaml: columns, types, foreign key and
indexes), the same JSON (decimals as strings, ids as strings, `{"items", "total",
"next_cursor"}` pages; next_cursor is always null here, as no cursor is accepted).
PostgreSQL only.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench python app.py   # create tables
    DATABASE_URL=... uvicorn app:app                                         # serve
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
POOL_MIN = 10
POOL_MAX = 20  # the generated service's pool: 10 + 10 overflow

SCHEMA = """
CREATE TABLE categories (
    id uuid PRIMARY KEY,
    name varchar(100) NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE products (
    id uuid PRIMARY KEY,
    name varchar(200) NOT NULL,
    price numeric(10, 2) NOT NULL,
    status varchar(7) NOT NULL DEFAULT 'draft',
    stock integer NOT NULL,
    category_id uuid NOT NULL
        CONSTRAINT fk_products_category_id REFERENCES categories (id) ON DELETE RESTRICT,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX ix_products_category_id ON products (category_id);
CREATE INDEX ix_products_status_price ON products (status, price);
"""

COLUMNS = "id, name, price, status, stock, category_id, created_at, updated_at"
GET_ONE = f"SELECT {COLUMNS} FROM products WHERE id = $1"
INSERT = (
    f"INSERT INTO products ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {COLUMNS}"
)
SORTABLE = frozenset({"name", "price", "stock", "created_at"})
STATUSES = frozenset({"draft", "active", "retired"})
MAX_LIMIT = 1000
INT32 = (-(2**31), 2**31 - 1)
PRICE_LIMIT = Decimal("1e8")  # numeric(10, 2): up to 8 digits before the point


# --- JSON -----------------------------------------------------------------------------


def _default(value: Any) -> str:
    # Decimals as strings (no precision lost); asyncpg's UUID subclass is not orjson's.
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def json(content: Any, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(content, default=_default),
        status_code=status_code,
        media_type="application/json",
    )


def problem(status_code: int, detail: str) -> Response:
    body = {"status": status_code, "detail": detail}
    return Response(
        orjson.dumps(body), status_code=status_code, media_type="application/problem+json"
    )


def uuid7() -> uuid.UUID:
    """A time-ordered id (RFC 9562 version 7), as the generated service makes them."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


# --- the database ---------------------------------------------------------------------


class State:
    pool: asyncpg.Pool | None = None


def pool() -> asyncpg.Pool:
    assert State.pool is not None, "the lifespan did not run"
    return State.pool


async def _keep_session(_: asyncpg.Connection) -> None:
    """Nothing to reset on release: the app sets no session state (no SET, LISTEN, locks).

    asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` on every release: a round trip per request that the app does not need.
    """


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    State.pool = await asyncpg.create_pool(
        DATABASE_URL, min_size=POOL_MIN, max_size=POOL_MAX, reset=_keep_session
    )
    try:
        yield
    finally:
        await State.pool.close()
        State.pool = None


# --- routes ---------------------------------------------------------------------------


async def get_product(request: Request) -> Response:
    try:
        product_id = uuid.UUID(request.path_params["product_id"])
    except ValueError:
        return problem(422, "id: not a UUID")
    row = await pool().fetchrow(GET_ONE, product_id)
    if row is None:
        return problem(404, f"No Product with id {product_id}.")
    return json(dict(row))


def _list_statements(params: Any) -> tuple[str, str, list[Any]] | Response:
    """(page SQL, count SQL, arguments) for the query string, or a 400/422 problem."""
    conditions: list[str] = []
    arguments: list[Any] = []
    status = params.get("status")
    if status is not None:
        if status not in STATUSES:
            return problem(422, f"status: one of {sorted(STATUSES)}")
        arguments.append(status)
        conditions.append(f"status = ${len(arguments)}")
    price_lt = params.get("price__lt")
    if price_lt is not None:
        try:
            bound = Decimal(price_lt)
        except InvalidOperation:
            return problem(422, "price__lt: not a decimal")
        if not bound.is_finite():
            return problem(422, "price__lt: not a decimal")
        arguments.append(bound)
        conditions.append(f"price < ${len(arguments)}")
    sort = params.get("sort", "-created_at")
    column = sort.removeprefix("-")
    if column not in SORTABLE:
        return problem(400, f"cannot sort by {sort!r}")
    direction = "DESC" if sort.startswith("-") else "ASC"
    try:
        limit = int(params.get("limit", "50"))
        offset = int(params.get("offset", "0"))
    except ValueError:
        return problem(422, "limit and offset: integers")
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        return problem(422, f"limit: 1 to {MAX_LIMIT}; offset: 0 or more")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    count = f"SELECT count(*) FROM products{where}"
    arguments += [limit, offset]
    page = (
        f"SELECT {COLUMNS} FROM products{where} ORDER BY {column} {direction}, id {direction} "
        f"LIMIT ${len(arguments) - 1} OFFSET ${len(arguments)}"
    )
    return page, count, arguments


async def list_products(request: Request) -> Response:
    statements = _list_statements(request.query_params)
    if isinstance(statements, Response):
        return statements
    page, count, arguments = statements
    async with pool().acquire() as conn:
        rows = await conn.fetch(page, *arguments)
        total = await conn.fetchval(count, *arguments[:-2])
    return json({"items": [dict(r) for r in rows], "total": total, "next_cursor": None})


def _new_product(body: Any) -> list[Any] | str:
    """INSERT arguments from a request body, or what is wrong with it."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    unknown = body.keys() - {"name", "price", "status", "stock", "category_id"}
    if unknown:
        return f"unknown fields: {sorted(unknown)}"
    name = body.get("name")
    if not isinstance(name, str) or len(name) > 200:
        return "name: a string of at most 200 characters"
    raw_price = body.get("price")
    if isinstance(raw_price, bool) or not isinstance(raw_price, (str, int, float)):
        return "price: a decimal"
    try:
        price = Decimal(str(raw_price))
    except InvalidOperation:
        return "price: a decimal"
    exponent = price.as_tuple().exponent
    if (
        not price.is_finite()
        or not isinstance(exponent, int)
        or exponent < -2
        or not 0 <= price < PRICE_LIMIT
    ):
        return "price: at least 0, at most 10 digits with 2 decimal places"
    status = body.get("status", "draft")
    if status not in STATUSES:
        return f"status: one of {sorted(STATUSES)}"
    stock = body.get("stock")
    if isinstance(stock, bool) or not isinstance(stock, int) or not INT32[0] <= stock <= INT32[1]:
        return "stock: a 32-bit integer"
    raw_category = body.get("category_id")
    if not isinstance(raw_category, str):
        return "category_id: a UUID"
    try:
        category_id = uuid.UUID(raw_category)
    except ValueError:
        return "category_id: a UUID"
    return [uuid7(), name, price, status, stock, category_id, dt.datetime.now(dt.UTC)]


async def create_product(request: Request) -> Response:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return problem(422, "the body is not JSON")
    arguments = _new_product(body)
    if isinstance(arguments, str):
        return problem(422, arguments)
    try:
        row = await pool().fetchrow(INSERT, *arguments)
    except asyncpg.ForeignKeyViolationError:
        return problem(409, "category_id: no such category")
    assert row is not None
    response = json(dict(row), status_code=201)
    response.headers["Location"] = f"/products/{row['id']}"
    return response


app = Starlette(
    routes=[
        Route("/products", list_products, methods=["GET"]),
        Route("/products", create_product, methods=["POST"]),
        Route("/products/{product_id}", get_product, methods=["GET"]),
    ],
    lifespan=lifespan,
)


async def create_schema() -> None:
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(create_schema())
