"""A fixed set of items for the filter, search and sort contract tests.

Every column has NULLs (where nullable), duplicates and edge values: the int32 and
int64 limits, a negative decimal, datetimes with offsets and microseconds (two rows at
the same instant written in different offsets), LIKE wildcards and a backslash in
strings, with decoys that a wildcard would wrongly match. ``load`` creates the rows
through the API and returns them as typed Python values plus their ids, which is
what the reference implementations in the tests compare against.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx

from .runtime_api import create

D = Decimal
UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2))
MINUS5 = dt.timezone(dt.timedelta(hours=-5, minutes=-30))


def token_uuid(n: int) -> uuid.UUID:
    # Version 7 like the runtime's ids: MariaDB's UUID type sorts versions 1-5 with
    # their segments swapped, versions 6+ byte by byte as the other databases do.
    return uuid.UUID(f"00000000-0000-7000-8000-{n:012x}")


OWNERS = ("ann", "bob")
CATEGORIES = ("c1", "c2")

# Columns in order: name, body, email, url, qty, big, price, ratio, active, born,
# seen_at, token, status, data, code, owner, category.
_COLUMNS = (
    "name",
    "body",
    "email",
    "url",
    "qty",
    "big",
    "price",
    "ratio",
    "active",
    "born",
    "seen_at",
    "token",
    "status",
    "data",
    "code",
    "owner",
    "category",
)
_ROWS: tuple[tuple[Any, ...], ...] = (
    (
        "Alpha",
        "The quick brown fox",
        "alpha@example.com",
        "https://example.com/a",
        10,
        9_000_000_000_000_000_000,
        D("12.30"),
        0.5,
        True,
        dt.date(2020, 1, 31),
        dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=PLUS2),
        token_uuid(1),
        "active",
        {"k": 1, "nested": {"list": [1, "two", None]}},
        "A-1",
        "ann",
        "c1",
    ),
    (
        "alpha",
        "THE LAZY DOG",
        "bob.smith@example.com",
        None,
        -(2**31),
        -(2**63),
        D("-0.01"),
        -1.5,
        False,
        dt.date(1999, 12, 31),
        dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC),  # the same instant as Alpha
        token_uuid(2),
        "draft",
        [1, 2.5, "three"],
        "B-2",
        "bob",
        None,
    ),
    (
        "100% cotton",
        "100% pure",
        None,
        "https://example.com/b?x=1",
        0,
        0,
        D("0.00"),
        0.0,
        True,
        None,
        None,
        None,
        "retired",
        None,
        None,
        "ann",
        "c2",
    ),
    (
        "1000 cotton",
        None,
        "carol@example.com",
        None,
        2**31 - 1,
        2**63 - 1,
        D("99999999.99"),
        None,
        False,
        dt.date(2024, 2, 29),
        dt.datetime(1999, 12, 31, 18, 29, 59, 999999, tzinfo=MINUS5),
        token_uuid(3),
        "draft",
        "just a string",
        "C-3",
        "ann",
        "c1",
    ),
    (
        "snake_case",
        "a_b",
        "dave@example.com",
        "https://example.com/c",
        10,
        None,
        D("12.3"),
        0.25,
        True,
        dt.date(2020, 1, 31),
        dt.datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC),
        token_uuid(1),
        "active",
        0,
        "D-4",
        "bob",
        "c2",
    ),
    (
        "snakeXcase",
        "aXb",
        None,
        None,
        None,
        42,
        None,
        3.0,
        False,
        None,
        None,
        None,
        "retired",
        False,
        "E-5",
        "ann",
        None,
    ),
    (
        "back\\slash",
        "c:\\dir\\file",
        "eve@example.com",
        "https://example.com/d",
        7,
        42,
        D("7.00"),
        1024.0,
        True,
        dt.date(2000, 2, 29),
        dt.datetime(2000, 2, 29, 23, 0, 0, tzinfo=MINUS5),
        token_uuid(4),
        "draft",
        {"emoji": "\U0001f600", "text": "Grüße"},
        "F-6",
        "bob",
        "c1",
    ),
    (
        "backslash",
        "c:/dir/file",
        None,
        None,
        None,
        None,
        D("7"),
        None,
        True,
        None,
        None,
        None,
        "active",
        None,
        None,
        "bob",
        None,
    ),
    (
        "Grüße \U0001f600",
        "Ünïcödé text",
        "frank@example.com",
        None,
        3,
        3,
        D("0.10"),
        -0.0,
        False,
        dt.date(1970, 1, 1),
        dt.datetime(1970, 1, 1, 0, 0, 0, tzinfo=UTC),
        token_uuid(5),
        "retired",
        {},
        "G-7",
        "ann",
        "c2",
    ),
)

ROWS: tuple[dict[str, Any], ...] = tuple(dict(zip(_COLUMNS, row, strict=True)) for row in _ROWS)


def json_value(value: Any) -> Any:
    """``value`` as a client sends it in JSON."""
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.date):  # dates and datetimes
        return value.isoformat()
    return value


async def load(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Create owners, categories and ``ROWS``; the rows as typed values with their ids.

    ``owner_id`` and ``category_id`` replace ``owner`` and ``category``; ``seen_at``
    is normalised to UTC, as the API returns it.
    """
    owner_ids = {n: (await create(client, "/owners", {"name": n}))["id"] for n in OWNERS}
    category_ids = {
        n: (await create(client, "/categories", {"label": n}))["id"] for n in CATEGORIES
    }
    loaded: list[dict[str, Any]] = []
    for row in ROWS:
        typed = {k: v for k, v in row.items() if k not in {"owner", "category"}}
        typed["owner_id"] = owner_ids[row["owner"]]
        typed["category_id"] = category_ids.get(row["category"]) if row["category"] else None
        body = {k: json_value(v) for k, v in typed.items()}
        created = await create(client, "/items", body)
        if typed["seen_at"] is not None:
            typed["seen_at"] = typed["seen_at"].astimezone(UTC)
        typed["id"] = uuid.UUID(created["id"])
        loaded.append(typed)
    return loaded


def by_name(rows: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {row["name"]: row for row in rows}
