"""No request yields a 500: random query strings, bodies and ids against a populated table.

Queries that are refused must be 400 problems naming a parameter; bodies are sent as
raw JSON (with NaN, Infinity and lone surrogates, which httpx would not encode).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.parse
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import runtime_data
from support.runtime_api import PROBLEM_JSON, create
from support.runtime_service import item_resource

FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

FIELDS = [*item_resource.filters, "nope", "q", "sort", "limit", "offset", "cursor"]
OPS = ["", "__eq", "__ne", "__lt", "__lte", "__gt", "__gte", "__in", "__contains"]
OPS += ["__icontains", "__startswith", "__endswith", "__isnull", "__bogus", "__"]
OFFSETS = st.sampled_from(["", "Z", "+00:00", "+14:00", "-12:00", "+05:30", "-00:01"])
TRICKY = [
    "",
    ",",
    ",,",
    "%",
    "_",
    "\\",
    "%_\\",
    "true",
    "null",
    "NaN",
    "sNaN",
    "-0",
    "1e999",
    "9" * 30,
    "-",
    "--qty",
    "qty,-qty",
    "-id",
    "0001-01-01",
    "9999-12-31T23:59:59-01:00",
    "2024-02-30",
    "\x00",
    "\u00e9",
    "\U0001f600",
    "  1  ",
    "1_000",
    "0x10",
    "+5",
    "' OR 1=1 --",
]
SCALARS = st.one_of(
    st.text(max_size=20),
    st.integers().map(str),
    st.floats().map(str),
    st.decimals().map(str),
    st.dates().map(str),
    st.builds(lambda d, o: d.isoformat() + o, st.datetimes(), OFFSETS),
    st.uuids().map(str),
    st.sampled_from(TRICKY),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)


def _cursor(payload: Any) -> str:
    # json, not orjson: payloads may hold integers beyond 64 bits, NaN and Infinity.
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


CURSORS = st.one_of(
    st.text(max_size=20),
    JSON_VALUES.map(_cursor),
    st.builds(
        lambda sort, values: _cursor({"s": sort, "v": values}),
        st.sampled_from(["created_at,id", "qty,id", "-price,-id", "active,id", "seen_at,id"]),
        st.lists(JSON_VALUES | SCALARS, max_size=3),
    ),
)
KEYS = st.one_of(
    st.builds(lambda f, o: f + o, st.sampled_from(FIELDS), st.sampled_from(OPS)),
    st.text(max_size=8),
)
QUERIES = st.dictionaries(KEYS, SCALARS | st.lists(SCALARS, max_size=4).map(",".join), max_size=4)


@pytest.fixture
async def populated(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await runtime_data.load(client)
    return client


def _assert_sound(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith(PROBLEM_JSON), response.text


@FUZZ
@given(params=QUERIES, sort=st.none() | SCALARS, cursor=st.none() | CURSORS)
async def test_random_list_queries(
    populated: httpx.AsyncClient, params: dict[str, str], sort: str | None, cursor: str | None
) -> None:
    query = dict(params)
    if sort is not None:
        query["sort"] = sort
    if cursor is not None:
        query["cursor"] = cursor
    response = await populated.get("/items", params=query)
    _assert_sound(response)
    if response.status_code == 400:
        assert response.json().get("parameter") in {*query, None}, response.text
    else:
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"items", "total", "next_cursor"}


def _text_or(*others: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    text = st.text(st.characters(codec=None) | st.characters(categories=["Cs"]), max_size=50)
    return st.one_of(text, JSON_VALUES, *others)


FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": _text_or(),
    "body": _text_or(),
    "email": _text_or(st.emails()),
    "url": _text_or(st.just("https://example.com/x")),
    "qty": _text_or(st.integers(), st.integers(-(2**31), 2**31 - 1)),
    "big": _text_or(st.integers()),
    "price": _text_or(st.decimals().map(str), st.floats()),
    "ratio": _text_or(st.floats()),
    "active": _text_or(),
    "born": _text_or(st.dates().map(str)),
    "seen_at": _text_or(st.builds(lambda d, o: d.isoformat() + o, st.datetimes(), OFFSETS)),
    "token": _text_or(st.uuids().map(str)),
    "status": _text_or(st.sampled_from(["draft", "active", "retired"])),
    "data": JSON_VALUES,
    "code": _text_or(),
    "owner_id": st.integers() | st.just("owner") | JSON_VALUES,
    "category_id": st.integers() | JSON_VALUES,
    "extra": JSON_VALUES,
}
BODIES = st.fixed_dictionaries({}, optional=FIELD_VALUES) | JSON_VALUES


def _raw(body: Any, owner_id: int) -> str:
    if isinstance(body, dict) and body.get("owner_id") == "owner":
        body = {**body, "owner_id": owner_id}
    return json.dumps(body, allow_nan=True)  # NaN, Infinity, and "\ud800" as escapes


@FUZZ
@given(body=BODIES, patch=BODIES, use_valid_owner=st.booleans())
async def test_random_bodies(
    populated: httpx.AsyncClient, body: Any, patch: Any, use_valid_owner: bool
) -> None:
    owners = (await populated.get("/owners")).json()["items"]
    owner_id = owners[0]["id"]
    if use_valid_owner and isinstance(body, dict):
        body = {"name": "fuzz", **body, "owner_id": owner_id}
    headers = {"content-type": "application/json"}
    response = await populated.post("/items", content=_raw(body, owner_id), headers=headers)
    _assert_sound(response)
    target = response.json()["id"] if response.status_code == 201 else None
    if target is None:
        target = (await populated.get("/items", params={"limit": "1"})).json()["items"][0]["id"]
    response = await populated.patch(
        f"/items/{target}", content=_raw(patch, owner_id), headers=headers
    )
    _assert_sound(response)


@FUZZ
@given(raw_id=st.text(max_size=40) | st.uuids().map(str) | st.integers().map(str))
async def test_random_ids(client: httpx.AsyncClient, raw_id: str) -> None:
    quoted = urllib.parse.quote(raw_id, safe="")
    for method, path in (
        ("GET", f"/items/{quoted}"),
        ("DELETE", f"/items/{quoted}"),
        ("GET", f"/owners/{quoted}"),
        ("PATCH", f"/owners/{quoted}"),
        ("DELETE", f"/owners/{quoted}"),
        ("GET", f"/items/{quoted}/tags"),
        ("PUT", f"/items/{quoted}/tags/{quoted}"),
    ):
        _assert_sound(await client.request(method, path))


async def test_malformed_bodies(client: httpx.AsyncClient) -> None:
    owner = await create(client, "/owners", {"name": "o"})
    headers = {"content-type": "application/json"}
    for content in (b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"name": "x"', b"{}" * 3):
        response = await client.post("/items", content=content, headers=headers)
        _assert_sound(response)
        assert response.status_code in {400, 422}, response.text
    response = await client.post(
        "/items", content=b"name=x", headers={"content-type": "text/plain"}
    )
    _assert_sound(response)
    body = {"name": "x", "owner_id": owner["id"], "seen_at": dt.datetime.max.isoformat() + "-01:00"}
    _assert_sound(await client.post("/items", json=body))
