"""Keyset (cursor) pagination returns exactly the offset walk and the full sorted list.

Sorts mix nullable columns (nulls last both ways) and columns full of duplicates, so
the id tie-breaker and the NULL handling of the keyset condition are exercised; the
property test draws random rows, sorts, filters and page sizes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine
from support import runtime_data
from support.runtime_api import list_all, sort_param, sort_rows
from support.runtime_service import ITEM_SORTABLE, STATUSES, items, owners

Keys = list[tuple[str, bool]]


async def walk_with_cursor(
    client: httpx.AsyncClient, params: Mapping[str, str], limit: int, total: int
) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(total + 2):
        query = {**params, "limit": str(limit)}
        if cursor is not None:
            query["cursor"] = cursor
        page = await list_all(client, "/items", query)
        assert page["total"] == total, page
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
        assert len(page["items"]) == limit, page
    raise AssertionError(f"the cursor walk did not end after {total + 2} pages")


async def walk_with_offset(
    client: httpx.AsyncClient, params: Mapping[str, str], limit: int, total: int
) -> list[str]:
    seen: list[str] = []
    for offset in range(0, total + limit, limit):
        query = {**params, "limit": str(limit), "offset": str(offset)}
        page = await list_all(client, "/items", query)
        assert page["total"] == total, page
        seen += [item["id"] for item in page["items"]]
        if len(page["items"]) < limit:
            break
    return seen


async def assert_walks_agree(
    client: httpx.AsyncClient, params: Mapping[str, str], limit: int, expected: list[str]
) -> None:
    full = await list_all(client, "/items", {**params, "limit": "1000"})
    assert [i["id"] for i in full["items"]] == expected, params
    assert full["next_cursor"] is None
    by_cursor = await walk_with_cursor(client, params, limit, len(expected))
    assert by_cursor == expected, (params, limit)
    by_offset = await walk_with_offset(client, params, limit, len(expected))
    assert by_offset == expected, (params, limit)


FIXED_SORTS: list[Keys] = [
    [("qty", False)],
    [("qty", True)],
    [("category_id", False), ("seen_at", True)],
    [("active", False), ("price", True)],
    [("status", True), ("born", False), ("ratio", True)],
    [("token", False)],
    [("email", True), ("id", False)],
    [("created_at", True)],
]


async def test_cursor_walk_equals_offset_walk_on_fixed_rows(client: httpx.AsyncClient) -> None:
    rows = await runtime_data.load(client)
    for keys in FIXED_SORTS:
        # The rows were created one after another: -created_at is newest first.
        newest_first = keys == [("created_at", True)]
        expected = [str(r["id"]) for r in (rows[::-1] if newest_first else sort_rows(rows, keys))]
        for limit in (1, 2, 4):
            await assert_walks_agree(client, {"sort": sort_param(keys)}, limit, expected)


# --- property test ------------------------------------------------------------------

CREATED = [dt.datetime(2025, 1, 1, 0, 0, s % 2, 250000 * (s // 2), tzinfo=dt.UTC) for s in range(4)]
PRICES = [Decimal(v) for v in ("-1.50", "0.00", "0.10", "2.00", "99999999.99")]
RATIOS = [-1.5, 0.0, 0.25, 3.0, 1024.0]
DATES = [dt.date(1999, 12, 31), dt.date(2020, 2, 29), dt.date(2020, 3, 1)]
MOMENTS = [
    dt.datetime(2024, 5, 1, 10, 0, 0, 1, tzinfo=dt.UTC),
    dt.datetime(2024, 5, 1, 10, 0, 0, 2, tzinfo=dt.UTC),
    dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
]


def v7(number: int) -> uuid.UUID:
    """``number`` shaped as a version 7 UUID, like the ids the runtime generates.

    MariaDB's UUID type orders versions 1-5 (uuid4, uuid5) with swapped segments, so
    only these sort the same on every database.
    """
    value = number & ~(0xF << 76) & ~(0x3 << 62) & ((1 << 128) - 1)
    return uuid.UUID(int=value | (0x7 << 76) | (0b10 << 62))


TOKENS = [v7(n) for n in (1, 2**64, 2**127 + 5)]


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


ROW = st.fixed_dictionaries(
    {
        "id": st.integers(0, 2**128 - 1).map(v7),
        "name": st.text("abc", min_size=1, max_size=2),
        "owner": st.integers(0, 2),
        "email": _maybe(st.sampled_from(["a@x.io", "b@x.io", "ab@x.io"])),
        "qty": _maybe(st.integers(-2, 2)),
        "big": _maybe(st.sampled_from([-(2**63), 0, 2**63 - 1])),
        "price": _maybe(st.sampled_from(PRICES)),
        "ratio": _maybe(st.sampled_from(RATIOS)),
        "active": st.booleans(),
        "born": _maybe(st.sampled_from(DATES)),
        "seen_at": _maybe(st.sampled_from(MOMENTS)),
        "token": _maybe(st.sampled_from(TOKENS)),
        "status": st.sampled_from(STATUSES),
        "has_code": st.booleans(),
        "created_at": st.sampled_from(CREATED),
        "updated_at": st.sampled_from(CREATED),
    }
)

ROWS = st.lists(ROW, max_size=24, unique_by=(lambda r: r["id"], lambda r: (r["name"], r["owner"])))
SORT_COLUMNS = [*(c for c in ITEM_SORTABLE if c != "category_id"), "created_at", "updated_at", "id"]
SORTS = st.lists(
    st.tuples(st.sampled_from(SORT_COLUMNS), st.booleans()),
    min_size=1,
    max_size=3,
    unique_by=lambda key: key[0],
)
FILTERS: dict[str, tuple[dict[str, str], Callable[[Mapping[str, Any]], bool]]] = {
    "none": ({}, lambda r: True),
    "active": ({"active": "true"}, lambda r: r["active"]),
    "qty__gte": ({"qty__gte": "0"}, lambda r: r["qty"] is not None and r["qty"] >= 0),
    "price__ne": ({"price__ne": "0"}, lambda r: r["price"] is None or r["price"] != 0),
    "q": ({"q": "A"}, lambda r: "a" in r["name"] or (r["email"] or "").startswith("a")),
}


@pytest.fixture
async def owner_ids(engine: AsyncEngine) -> list[int]:
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        for name in ("o0", "o1", "o2"):
            await conn.execute(owners.insert().values(name=name, created_at=now, updated_at=now))
        found = await conn.execute(sa.select(owners.c.id).order_by(owners.c.name))
        return list(found.scalars())


@settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=ROWS,
    keys=SORTS,
    limit=st.integers(1, 7),
    filter_name=st.sampled_from(sorted(FILTERS)),
)
async def test_cursor_walk_equals_offset_walk_and_sorted_list(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    owner_ids: list[int],
    rows: list[dict[str, Any]],
    keys: Keys,
    limit: int,
    filter_name: str,
) -> None:
    typed = []
    for index, row in enumerate(rows):
        values = {k: v for k, v in row.items() if k not in {"owner", "has_code"}}
        values["owner_id"] = owner_ids[row["owner"]]
        values["code"] = f"C{index}" if row["has_code"] else None
        typed.append(values)
    async with engine.begin() as conn:
        await conn.execute(items.delete())
        if typed:
            await conn.execute(items.insert(), typed)
    params, predicate = FILTERS[filter_name]
    expected = [str(r["id"]) for r in sort_rows(filter(predicate, typed), keys)]
    await assert_walks_agree(client, {**params, "sort": sort_param(keys)}, limit, expected)


async def test_uuid_sorts_page_consistently_whatever_the_uuid_version(
    client: httpx.AsyncClient, engine: AsyncEngine, owner_ids: list[int]
) -> None:
    """MariaDB's UUID type orders versions 1-5 by swapped segments, not byte by byte.

    The order then differs from PostgreSQL and SQLite, but pages must still be exact:
    ORDER BY and the keyset comparison use the same order.
    """
    now = dt.datetime.now(dt.UTC)
    tokens = [uuid.uuid1(node=n, clock_seq=n) for n in range(6)] + [uuid.uuid4() for _ in range(6)]
    tokens += [uuid.uuid5(uuid.NAMESPACE_URL, str(n)) for n in range(6)] + [None, None]
    async with engine.begin() as conn:
        await conn.execute(
            items.insert(),
            [
                {
                    "id": v7(n),
                    "name": f"n{n}",
                    "owner_id": owner_ids[0],
                    "token": token,
                    "active": False,
                    "status": "draft",
                    "created_at": now,
                    "updated_at": now,
                }
                for n, token in enumerate(tokens)
            ],
        )
    for sort in ("token", "-token"):
        full = await list_all(client, "/items", {"sort": sort, "limit": "1000"})
        expected = [i["id"] for i in full["items"]]
        assert [i["token"] for i in full["items"]][-2:] == [None, None]
        assert sorted(uuid.UUID(i["token"]) for i in full["items"][:-2]) == sorted(
            t for t in tokens if t is not None
        )
        await assert_walks_agree(client, {"sort": sort}, 5, expected)
