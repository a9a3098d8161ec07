"""Filters, search and sorting of list endpoints agree with a Python reference.

Every filter operator is tried on every column type it applies to against the fixed
rows of ``support.runtime_data``; the expected rows come from evaluating the same
condition in Python on the typed values. All mismatches of a run are reported at once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import httpx
from support import runtime_data
from support.runtime_api import gather_limited, ids, list_all, sort_param, sort_rows
from support.runtime_service import ITEM_SORTABLE, item_resource

from microforge.runtime.resource import EQUALITY_OPS, ORDERED_OPS, TEXT_OPS

Row = Mapping[str, Any]

# String order follows the database collation (MariaDB's ignores case, PostgreSQL's
# depends on the locale), so ordering operators on strings are checked with values
# whose order is the same under any of them: same case as the column's data.
STRING_ORDER_PROBES: dict[str, list[str]] = {
    "email": ["bob.smith@example.com", "c", "dave@example.com", "zzz"],
    "url": ["https://example.com/b", "https://example.com/b?x=1", "https://example.com/c"],
    "status": ["active", "draft", "e", "retired"],
    "code": ["A-1", "C", "D-4", "G-8"],
}


def _parse(raw: str, python_type: type) -> Any:
    """The reference reading of a filter value (independent of runtime.query)."""
    if python_type is bool:
        return raw.lower() in {"true", "1", "yes", "on"}
    if python_type is dt.datetime:
        moment = dt.datetime.fromisoformat(raw)
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    if python_type is dt.date:
        return dt.date.fromisoformat(raw)
    converters: dict[type, Callable[[str], Any]] = {
        int: int,
        float: float,
        Decimal: Decimal,
        uuid.UUID: uuid.UUID,
        str: str,
    }
    return converters[python_type](raw)


def _matches(value: Any, op: str, raw: str, python_type: type) -> bool:
    if op == "isnull":
        return (value is None) == _parse(raw, bool)
    if op == "ne":
        return value is None or value != _parse(raw, python_type)
    if value is None:
        return False
    if op == "in":
        return value in {_parse(part, python_type) for part in raw.split(",")}
    if op == "contains":
        return raw in value
    if op == "icontains":
        return raw.lower() in value.lower()
    if op == "startswith":
        return bool(value.startswith(raw))
    if op == "endswith":
        return bool(value.endswith(raw))
    probe = _parse(raw, python_type)
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "eq": lambda a, b: a == b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
    }
    return compare[op](value, probe)


def _probes(rows: list[Row], column: str, python_type: type) -> list[str]:
    """Filter values to try on ``column``: values present in the rows and one absent."""
    present = [r[column] for r in rows if r[column] is not None]
    distinct: list[Any] = []
    for value in present:
        if value not in distinct:
            distinct.append(value)
    chosen = distinct[:2] + distinct[-1:]
    texts = [_text(v) for v in chosen]
    absent = {
        str: "absent",
        int: "5",
        float: "0.75",
        Decimal: "12.305",
        dt.date: "2020-01-30",
        dt.datetime: "2024-05-01T09:00:00.123456+00:00",
        uuid.UUID: "00000000-0000-7000-8000-0000000000ff",
    }
    return [*texts, absent[python_type]] if python_type in absent else texts


def _text(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


# Extra probes: case and wildcard traps, offsets, precision spellings.
EXTRA_PROBES: dict[str, list[str]] = {
    "name": ["alpha", "ALPHA", "0%c", "0% c", "e_c", "k\\s", "\\", "%", "_", "Grüße", "\U0001f600"],
    "body": ["the", "THE", "0% p", "a_b", "_", "c:\\dir", "\\", "ü"],
    "email": ["example.com", "BOB", "alpha@example.com", "x@y"],
    "url": ["https://example.com/", "?x=1", "/a"],
    "status": ["act", "draft", "retired"],
    "code": ["A-1", "a-1", "-", "C"],
    "price": [
        *("12.3", "12.300", "12.301", "12.299", "7", "-0.010", "0", "0.001", "-0.005"),
        *("1e-30", "99999999.99", "-99999999.99"),
    ],
    "ratio": ["-0.0", "0", "1024", "1e3", "-1.5"],
    "qty": ["-2147483648", "2147483647", "0"],
    "big": ["-9223372036854775808", "9223372036854775807", "42"],
    "seen_at": [
        "2024-05-01T10:00:00.123456Z",
        "2024-05-01T12:00:00.123456+02:00",
        "2024-05-01T10:00:00.123456",
        "2000-03-01T04:00:00+00:00",
        "1999-12-31T23:59:59.999999+00:00",
    ],
    "born": ["2020-01-31", "2000-02-29"],
    "active": ["true", "false", "1", "no"],
}

# The `in` operator also gets long lists (present values among many absent ones).
SPECIAL_IN = {
    "qty": ",".join(str(n) for n in range(-500, 500)),
    "token": ",".join(str(runtime_data.token_uuid(n)) for n in range(3, 900)),
    "status": "draft,retired,nope",
    "name": "Alpha,back\\slash,100% cotton,none",
}


async def test_every_operator_on_every_type_matches_the_reference(
    client: httpx.AsyncClient,
) -> None:
    rows = await runtime_data.load(client)
    names = {str(r["id"]): r["name"] for r in rows}
    cases: list[tuple[str, str, list[str]]] = []  # (parameter, value, expected ids)
    for column, target in item_resource.filters.items():
        if column in {"created_at", "updated_at", "version"}:  # set by writes, not load
            continue
        python_type = target.python_type
        if python_type is object:  # json: only isnull
            probes: list[str] = []
        else:
            probes = _probes(rows, column, python_type) + EXTRA_PROBES.get(column, [])
        for op in sorted(target.ops):
            if op == "isnull":
                values = ["true", "false"]
            elif op == "in":
                values = [",".join(probes[:3]), probes[0]] if probes else []
                if column in SPECIAL_IN:
                    values.append(SPECIAL_IN[column])
            elif python_type is str and op in {"lt", "lte", "gt", "gte"}:
                values = STRING_ORDER_PROBES.get(column, [])
            elif op == "icontains":
                # Case folding beyond ASCII depends on the database and its locale.
                values = [v for v in probes if v.isascii()]
            else:
                values = probes
            for raw in values:
                key = column if op == "eq" else f"{column}__{op}"
                expected = sorted(
                    str(r["id"]) for r in rows if _matches(r[column], op, raw, python_type)
                )
                cases.append((key, raw, expected))

    async def check(key: str, raw: str, expected: list[str]) -> str | None:
        page = await list_all(client, "/items", {key: raw, "limit": "1000"})
        got = sorted(item["id"] for item in page["items"])
        if got == expected and page["total"] == len(expected):
            return None
        return (
            f"{key}={raw!r}: expected {sorted(names[i] for i in expected)}, "
            f"got {sorted(names[i] for i in got)} (total {page['total']})"
        )

    assert len(cases) > 300
    failures = [f for f in await gather_limited(check(*case) for case in cases) if f]
    assert not failures, "\n".join(failures)


async def test_operators_offered_per_type() -> None:
    filters = item_resource.filters
    for name in ("name", "body", "email", "url", "status", "code"):
        assert filters[name].ops == TEXT_OPS, name
    for name in ("qty", "big", "price", "ratio", "born", "seen_at", "owner_id", "created_at"):
        assert filters[name].ops == ORDERED_OPS, name
    for name in ("active", "token", "id"):
        assert filters[name].ops == EQUALITY_OPS, name
    assert filters["data"].ops == {"isnull"}


async def test_search_is_case_insensitive_and_literal(client: httpx.AsyncClient) -> None:
    rows = await runtime_data.load(client)
    names = {str(r["id"]): r["name"] for r in rows}

    async def search(text: str, **extra: str) -> list[str]:
        page = await list_all(client, "/items", {"q": text, "limit": "1000", **extra})
        assert page["total"] == len(page["items"])
        return sorted(names[i["id"]] for i in page["items"])

    # Over name, body and email, any case.
    assert await search("ALPHA") == ["Alpha", "alpha"]
    assert await search("the") == ["Alpha", "alpha"]
    assert await search("lazy dog") == ["alpha"]
    assert await search("BOB.SMITH") == ["alpha"]
    assert await search("CoTToN") == ["100% cotton", "1000 cotton"]
    # Wildcards and the escape character are plain text.
    assert await search("0%") == ["100% cotton"]
    assert await search("%") == ["100% cotton"]
    assert await search("e_c") == ["snake_case"]
    assert await search("_") == ["snake_case"]
    assert await search("k\\s") == ["back\\slash"]
    assert await search("\\") == ["back\\slash"]
    assert await search("Grüße") == ["Grüße \U0001f600"]
    assert await search("\U0001f600") == ["Grüße \U0001f600"]
    assert await search("nothing like this") == []
    # Combined with a filter (AND), and an empty q means no search.
    assert await search("alpha", active="true") == ["Alpha"]
    assert len(await search("")) == len(rows)


async def test_sort_on_every_sortable_column_both_ways(client: httpx.AsyncClient) -> None:
    rows = await runtime_data.load(client)
    names = {str(r["id"]): r["name"] for r in rows}
    failures: list[str] = []
    sortable = [c for c in ITEM_SORTABLE if c not in {"name"}] + ["id"]
    for column in sortable:
        for descending in (False, True):
            keys = [(column, descending)]
            page = await list_all(client, "/items", {"sort": sort_param(keys), "limit": "1000"})
            got = [names[i["id"]] for i in page["items"]]
            expected = [r["name"] for r in sort_rows(rows, keys)]
            if got != expected:
                failures.append(
                    f"sort={sort_param(keys)}:\n  expected {expected}\n  got      {got}"
                )
    # Several keys, nullable ones first, mixed directions.
    for keys in (
        [("category_id", False), ("qty", True)],
        [("born", True), ("price", False)],
        [("active", True), ("ratio", False), ("id", True)],
        [("status", False), ("seen_at", True), ("email", False)],
        [("price", True), ("big", True)],
    ):
        page = await list_all(client, "/items", {"sort": sort_param(keys), "limit": "1000"})
        got = [names[i["id"]] for i in page["items"]]
        expected = [r["name"] for r in sort_rows(rows, keys)]
        if got != expected:
            failures.append(f"sort={sort_param(keys)}:\n  expected {expected}\n  got      {got}")
    assert not failures, "\n".join(failures)


async def test_nulls_sort_last_in_both_directions(client: httpx.AsyncClient) -> None:
    rows = await runtime_data.load(client)
    for column in ("qty", "big", "price", "ratio", "born", "seen_at", "token", "email", "code"):
        nulls = sum(1 for r in rows if r[column] is None)
        assert nulls, column
        for sort in (column, f"-{column}"):
            page = await list_all(client, "/items", {"sort": sort, "limit": "1000"})
            values = [item[column] for item in page["items"]]
            assert values[-nulls:] == [None] * nulls, (sort, values)
            assert None not in values[:-nulls], (sort, values)


async def test_equal_sort_values_are_ordered_by_id(client: httpx.AsyncClient) -> None:
    rows = await runtime_data.load(client)
    for sort in ("status", "-status", "active", "-active"):
        page = await list_all(client, "/items", {"sort": sort, "limit": "1000"})
        column = sort.lstrip("-")
        groups: dict[Any, list[uuid.UUID]] = {}
        for item in page["items"]:
            groups.setdefault(item[column], []).append(uuid.UUID(item["id"]))
        for group in groups.values():
            assert group == sorted(group, reverse=sort.startswith("-")), (sort, group)
    assert len(rows) == len(page["items"])


async def test_default_sort_is_creation_order(client: httpx.AsyncClient) -> None:
    rows = await runtime_data.load(client)
    page = await list_all(client, "/items", {"limit": "1000"})
    assert [i["id"] for i in page["items"]] == ids(rows)
