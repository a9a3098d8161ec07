"""Every malformed list query answers 400 problem+json naming the bad parameter."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
from support.runtime_api import assert_problem, create, gather_limited, list_all


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


# (query parameters, the parameter the problem must name, text the detail must contain)
BAD_QUERIES: list[tuple[dict[str, str], str, str]] = [
    # Unknown fields, with a suggestion when one is close.
    ({"nmae": "x"}, "nmae", "Did you mean 'name'?"),
    ({"prise__gt": "1"}, "prise__gt", "Did you mean 'price'?"),
    ({"zzzzzz": "1"}, "zzzzzz", "Unknown query parameter"),
    ({"__gt": "1"}, "__gt", "Unknown query parameter"),
    ({"deleted_at__isnull": "true"}, "deleted_at__isnull", "Unknown"),
    # Unknown operators, and operators the type does not have.
    ({"name__like": "x"}, "name__like", "does not support 'like'"),
    ({"qty__eq__x": "1"}, "qty__eq__x", "does not support"),
    ({"qty__contains": "1"}, "qty__contains", "does not support 'contains'"),
    ({"active__gt": "true"}, "active__gt", "does not support 'gt'"),
    ({"token__lt": "x"}, "token__lt", "does not support 'lt'"),
    ({"id__icontains": "a"}, "id__icontains", "does not support"),
    ({"data": "{}"}, "data", "does not support 'eq'"),
    ({"data__contains": "x"}, "data__contains", "does not support"),
    ({"born__startswith": "2020"}, "born__startswith", "does not support"),
    # Values that do not parse, per type.
    ({"qty": "abc"}, "qty", "not a valid int"),
    ({"qty": "1.5"}, "qty", "not a valid int"),
    ({"qty__in": "1,2,x"}, "qty__in", "not a valid int"),
    ({"qty__in": ""}, "qty__in", "not a valid int"),
    ({"big": "1e3"}, "big", "not a valid int"),
    ({"price": "abc"}, "price", "not a valid decimal"),
    ({"price": "1,5"}, "price", "not a valid decimal"),
    ({"ratio": "abc"}, "ratio", "not a valid float"),
    ({"active": "maybe"}, "active", "not a valid bool"),
    ({"active__isnull": "perhaps"}, "active__isnull", "not a valid bool"),
    ({"born": "2020-02-30"}, "born", "not a valid date"),
    ({"born": "yesterday"}, "born", "not a valid date"),
    ({"born__lt": "2020-01-01T10:00:00"}, "born__lt", "not a valid date"),
    ({"seen_at": "noon"}, "seen_at", "not a valid datetime"),
    ({"seen_at__gt": "2024-13-01T00:00:00"}, "seen_at__gt", "not a valid datetime"),
    ({"created_at__gte": "2024-01-01T25:00"}, "created_at__gte", "not a valid datetime"),
    ({"token": "not-a-uuid"}, "token", "not a valid uuid"),
    ({"id": "123"}, "id", "not a valid uuid"),
    ({"owner_id": "one"}, "owner_id", "not a valid int"),
    # NaN and Infinity are not numbers one can compare with.
    ({"price": "NaN"}, "price", "finite"),
    ({"price__gt": "sNaN"}, "price__gt", "finite"),
    ({"price": "Infinity"}, "price", "finite"),
    ({"price__lt": "-inf"}, "price__lt", "finite"),
    ({"ratio": "nan"}, "ratio", "finite"),
    ({"ratio__gte": "inf"}, "ratio__gte", "finite"),
    ({"ratio": "1e309"}, "ratio", "finite"),
    # Integers beyond the column's type (int32 for integer, int64 for bigint).
    ({"qty": "2147483648"}, "qty", "out of range"),
    ({"qty__gt": "-2147483649"}, "qty__gt", "out of range"),
    ({"qty__in": "1,99999999999"}, "qty__in", "out of range"),
    ({"owner_id": "4294967296"}, "owner_id", "out of range"),
    ({"big": "9223372036854775808"}, "big", "out of range"),
    ({"big__lt": "-9223372036854775809"}, "big__lt", "out of range"),
    ({"big": "1" * 5000}, "big", "not a valid int"),
    # Decimals beyond NUMERIC(10, 2), or with absurd precision.
    ({"price": "100000000"}, "price", "out of range (-99999999.99 to 99999999.99)"),
    ({"price__lt": "-1e400"}, "price__lt", "out of range"),
    ({"price__in": "1,1E+1000000000"}, "price__in", "out of range"),
    ({"price__gt": "1e-31"}, "price__gt", "more than 30 decimal places"),
    ({"price": "1E-1000000000"}, "price", "more than 30 decimal places"),
    # Datetimes that cannot be expressed in UTC.
    ({"seen_at": "0001-01-01T00:00:00+01:00"}, "seen_at", "not a valid datetime"),
    ({"seen_at__lt": "9999-12-31T23:59:59-01:00"}, "seen_at__lt", "not a valid datetime"),
    # NUL characters, anywhere.
    ({"name": "a\x00b"}, "name", "NUL"),
    ({"name__icontains": "\x00"}, "name__icontains", "NUL"),
    ({"qty": "1\x00"}, "qty", "NUL"),
    ({"q": "x\x00"}, "q", "NUL"),
    # Paging.
    ({"limit": "0"}, "limit", "between 1 and 1000"),
    ({"limit": "1001"}, "limit", "between 1 and 1000"),
    ({"limit": "-5"}, "limit", "between 1 and 1000"),
    ({"limit": "abc"}, "limit", "whole number"),
    ({"limit": ""}, "limit", "whole number"),
    ({"limit": "1.0"}, "limit", "whole number"),
    ({"offset": "-1"}, "offset", "between 0 and"),
    ({"offset": "x"}, "offset", "whole number"),
    # Sorting.
    ({"sort": "nope"}, "sort", "Cannot sort by 'nope'"),
    ({"sort": "data"}, "sort", "Cannot sort by 'data'"),
    ({"sort": "body"}, "sort", "Cannot sort by 'body'"),
    ({"sort": "qty,-qty"}, "sort", "appears twice"),
    ({"sort": "qty,"}, "sort", "Cannot sort by ''"),
    # `in` lists are capped like pages.
    ({"qty__in": ",".join(["1"] * 1001)}, "qty__in", "more than 1000"),
    # Cursors that did not come from a response for this query.
    ({"cursor": "garbage!!"}, "cursor", "malformed"),
    ({"cursor": "e30"}, "cursor", "malformed"),  # {}
    ({"cursor": "%%%"}, "cursor", "malformed"),
    ({"cursor": "\u00e9\u00e9\u00e9"}, "cursor", "malformed"),
    ({"cursor": _cursor([1, 2])}, "cursor", "malformed"),
    ({"cursor": _cursor({"s": "created_at,id", "v": "x"})}, "cursor", "different sort"),
    ({"cursor": _cursor({"s": "created_at,id", "v": [1]})}, "cursor", "different sort"),
    ({"cursor": _cursor({"s": "qty,id", "v": [1, None]})}, "cursor", "different sort"),
    (
        {"sort": "qty", "cursor": _cursor({"s": "qty,id", "v": ["x", None]})},
        "cursor",
        "not a valid int",
    ),
    (
        {"sort": "qty", "cursor": _cursor({"s": "qty,id", "v": [2**40, None]})},
        "cursor",
        "out of range",
    ),
    (
        {"sort": "status", "cursor": _cursor({"s": "status,id", "v": [None, None]})},
        "cursor",
        "malformed",
    ),
    (
        {"sort": "seen_at", "cursor": _cursor({"s": "seen_at,id", "v": ["soon", None]})},
        "cursor",
        "not a valid datetime",
    ),
    (
        {"sort": "name", "cursor": _cursor({"s": "name,id", "v": ["a\x00", None]})},
        "cursor",
        "NUL",
    ),
]


async def test_bad_queries_answer_400_naming_the_parameter(client: httpx.AsyncClient) -> None:
    async def check(params: dict[str, str], parameter: str, detail: str) -> str | None:
        response = await client.get("/items", params=params)
        try:
            body = assert_problem(response, 400, parameter)
            assert detail in body["detail"], body["detail"]
            assert body["type"] == "urn:microforge:problem:query", body
        except AssertionError as exc:
            return f"{params!r:.120}: {exc}"
        return None

    failures = [f for f in await gather_limited(check(*case) for case in BAD_QUERIES) if f]
    assert not failures, "\n".join(failures)


async def test_cursor_is_bound_to_its_sort_and_excludes_offset(client: httpx.AsyncClient) -> None:
    owner = await create(client, "/owners", {"name": "ann"})
    for n in range(3):
        await create(client, "/items", {"name": f"i{n}", "qty": n, "owner_id": owner["id"]})
    page = await list_all(client, "/items", {"sort": "qty", "limit": "1"})
    cursor = page["next_cursor"]
    assert isinstance(cursor, str)
    # The same order continues (`qty` is `qty,id`: ids break ties); any other order,
    # even only another direction of the tie-breaker, is refused.
    for sort in ("qty", "qty,id"):
        response = await client.get("/items", params={"sort": sort, "cursor": cursor})
        assert response.status_code == 200, response.text
    for sort in ("-qty", "qty,-id", "name", ""):
        response = await client.get("/items", params={"sort": sort, "cursor": cursor})
        assert_problem(response, 400, "cursor")
    response = await client.get("/items", params={"sort": "qty", "cursor": cursor, "offset": "0"})
    body = assert_problem(response, 400, "cursor")
    assert "offset" in body["detail"]
    # A cursor still works with filters added (it only encodes the sort position).
    page = await list_all(client, "/items", {"sort": "qty", "cursor": cursor, "qty__gte": "2"})
    assert [i["qty"] for i in page["items"]] == [2]


async def test_limits_at_the_edges_are_accepted(client: httpx.AsyncClient) -> None:
    for params in (
        {"limit": "1"},
        {"limit": "1000"},
        {"offset": "0"},
        {"offset": "10000000"},
        {"qty__in": ",".join(str(n) for n in range(1000))},
        {"qty": "-2147483648", "big": "9223372036854775807"},
        {"sort": ""},
        {"q": ""},
        {"cursor": ""},
    ):
        page = await list_all(client, "/items", params)
        assert page == {"items": [], "total": 0, "next_cursor": None}, params


async def test_search_on_a_collection_without_searchable_fields(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/categories", params={"q": "x"})
    assert_problem(response, 400, "q")
    response = await client.get("/categories", params={"labl": "x"})
    body = assert_problem(response, 400, "labl")
    assert "Did you mean 'label'?" in body["detail"]
