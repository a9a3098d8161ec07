"""Writes: exact round-trips, the JSON shape, conflicts, foreign key actions, soft delete."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from support.runtime_api import assert_problem, create, list_all
from support.runtime_service import documents, item_resource, owners

from microforge.runtime.repository import Repository

ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?\+00:00$")

FULL_ITEM: dict[str, Any] = {
    "name": "Full",
    "body": "Line one\nline two \u2014 \U0001f600",
    "email": "someone@example.com",
    "url": "https://example.com/path?q=1",
    "qty": -(2**31),
    "big": 2**63 - 1,
    "price": "-12345678.90",
    "ratio": 0.1,
    "active": True,
    "born": "2024-02-29",
    "seen_at": "2024-05-01T12:34:56.789012+02:00",
    "token": "0190a6e4-1c5b-7cc0-8d1e-0123456789ab",
    "status": "retired",
    "data": {"a": [1, 2.5, "x", None, True], "b": {"c": {}}, "n": -(2**63), "u": 2**64 - 1},
    "code": "CODE-1",
}


async def _owner(client: httpx.AsyncClient, name: str = "ann") -> int:
    owner_id: int = (await create(client, "/owners", {"name": name}))["id"]
    return owner_id


async def test_values_round_trip_exactly_in_the_documented_json_shape(
    client: httpx.AsyncClient,
) -> None:
    owner_id = await _owner(client)
    category = await create(client, "/categories", {"label": "c"})
    body = {**FULL_ITEM, "owner_id": owner_id, "category_id": category["id"]}
    response = await client.post("/items", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    created = response.json()
    assert response.headers["location"] == f"/items/{created['id']}"
    fetched = (await client.get(f"/items/{created['id']}")).json()
    listed = (await list_all(client, "/items"))["items"]
    assert fetched == created
    assert listed == [created]

    expected = {
        **body,
        "price": "-12345678.90",  # a string with the column's scale
        "seen_at": "2024-05-01T10:34:56.789012+00:00",  # in UTC, with its offset
    }
    for name, value in expected.items():
        assert created[name] == value, name
    assert uuid.UUID(created["id"]).version == 7
    assert set(created) == {c.name for c in item_resource.read_columns}
    for stamp in ("created_at", "updated_at"):
        assert ISO_WITH_OFFSET.match(created[stamp]), created[stamp]
        moment = dt.datetime.fromisoformat(created[stamp])
        assert abs(moment - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)

    # The page shape, exactly.
    page = await list_all(client, "/items", {"limit": "1"})
    assert set(page) == {"items", "total", "next_cursor"}
    assert page["total"] == 1
    assert page["next_cursor"] is None


# (field, value sent, value returned)
NORMALISED: list[tuple[str, Any, Any]] = [
    ("price", "7", "7.00"),
    ("price", "0.1", "0.10"),
    ("price", 12.5, "12.50"),
    ("price", "99999999.99", "99999999.99"),
    ("seen_at", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00+00:00"),
    ("seen_at", "2024-01-01T00:00:00", "2024-01-01T00:00:00+00:00"),  # naive means UTC
    ("seen_at", "2024-01-01T01:30:00.000001+01:30", "2024-01-01T00:00:00.000001+00:00"),
    ("seen_at", "1970-01-01T00:00:00-12:00", "1970-01-01T12:00:00+00:00"),
    ("token", "0190A6E4-1C5B-7CC0-8D1E-0123456789AB", "0190a6e4-1c5b-7cc0-8d1e-0123456789ab"),
    ("born", "1000-01-01", "1000-01-01"),
    ("born", "9999-12-31", "9999-12-31"),
    ("data", [], []),
    ("data", "", ""),
    ("data", 0, 0),
    ("data", False, False),
    ("data", {"\u00fc": "\x00 is fine inside JSON"}, {"\u00fc": "\x00 is fine inside JSON"}),
    ("ratio", -0.0, -0.0),
    ("ratio", 1024.5, 1024.5),
]


async def test_values_are_normalised_the_same_way_everywhere(client: httpx.AsyncClient) -> None:
    owner_id = await _owner(client)
    failures = []
    for n, (field, sent, returned) in enumerate(NORMALISED):
        body = {"name": f"n{n}", "owner_id": owner_id, field: sent}
        created = await create(client, "/items", body)
        fetched = (await client.get(f"/items/{created['id']}")).json()
        if (created[field], fetched[field]) != (returned, returned):
            failures.append(f"{field}={sent!r}: created {created[field]!r}, got {fetched[field]!r}")
    assert not failures, "\n".join(failures)


async def test_float_precision(client: httpx.AsyncClient) -> None:
    """Doubles round-trip exactly on every database (float fields are DOUBLE columns)."""
    owner_id = await _owner(client)
    results = []
    for n, value in enumerate((0.1, 0.123456789012345, 1e300, 5e-324)):
        response = await client.post(
            "/items", json={"name": f"f{n}", "owner_id": owner_id, "ratio": value}
        )
        assert response.status_code in {201, 422}, response.text
        results.append((value, response.json().get("ratio", response.status_code)))
    assert all(sent == got for sent, got in results), results


async def test_unique_violations_are_409(client: httpx.AsyncClient) -> None:
    ann, bob = await _owner(client, "ann"), await _owner(client, "bob")
    first = await create(client, "/items", {"name": "a", "owner_id": ann, "code": "C-1"})
    # A unique column.
    response = await client.post("/items", json={"name": "b", "owner_id": ann, "code": "C-1"})
    body = assert_problem(response, 409)
    assert body["type"] == "urn:microforge:problem:unique-violation"
    # A composite unique: the same name is fine for another owner, not for the same one.
    await create(client, "/items", {"name": "a", "owner_id": bob})
    response = await client.post("/items", json={"name": "a", "owner_id": ann})
    assert_problem(response, 409)
    # Updates too; NULLs never collide.
    second = await create(client, "/items", {"name": "c", "owner_id": ann})
    response = await client.patch(f"/items/{second['id']}", json={"code": "C-1"})
    assert_problem(response, 409)
    response = await client.patch(f"/items/{second['id']}", json={"name": "a"})
    assert_problem(response, 409)
    await create(client, "/items", {"name": "d", "owner_id": ann, "code": None})
    await create(client, "/items", {"name": "e", "owner_id": ann, "code": None})
    # The failed writes changed nothing.
    assert (await client.get(f"/items/{first['id']}")).json() == first
    assert (await client.get(f"/items/{second['id']}")).json()["code"] is None
    assert (await list_all(client, "/items"))["total"] == 5


async def test_references_to_missing_rows_are_409(client: httpx.AsyncClient) -> None:
    ann = await _owner(client)
    response = await client.post("/items", json={"name": "x", "owner_id": ann + 1000})
    body = assert_problem(response, 409)
    assert body["type"] == "urn:microforge:problem:reference"
    assert "does not exist" in body["detail"]
    response = await client.post("/items", json={"name": "x", "owner_id": ann, "category_id": 7})
    assert_problem(response, 409)
    item = await create(client, "/items", {"name": "x", "owner_id": ann})
    response = await client.patch(f"/items/{item['id']}", json={"owner_id": ann + 1})
    assert_problem(response, 409)
    assert (await list_all(client, "/items"))["total"] == 1


async def test_restrict_and_set_null(client: httpx.AsyncClient) -> None:
    ann = await _owner(client)
    category = await create(client, "/categories", {"label": "c"})
    item = await create(
        client, "/items", {"name": "x", "owner_id": ann, "category_id": category["id"]}
    )
    # RESTRICT: the owner is still referenced.
    body = assert_problem(await client.delete(f"/owners/{ann}"), 409)
    assert body["type"] == "urn:microforge:problem:reference"
    assert "still referenced" in body["detail"]
    assert (await client.get(f"/owners/{ann}")).status_code == 200
    # SET NULL: deleting the category clears the reference.
    assert (await client.delete(f"/categories/{category['id']}")).status_code == 204
    after = (await client.get(f"/items/{item['id']}")).json()
    assert after["category_id"] is None
    assert after["updated_at"] == item["updated_at"]  # a database action, not an update
    # Without items the owner can go.
    assert (await client.delete(f"/items/{item['id']}")).status_code == 204
    assert (await client.delete(f"/owners/{ann}")).status_code == 204
    assert_problem(await client.get(f"/owners/{ann}"), 404)


async def test_soft_delete_hides_rows(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    kept = await create(client, "/documents", {"title": "kept", "pages": 1})
    gone = await create(client, "/documents", {"title": "gone", "pages": 2})
    assert (await client.delete(f"/documents/{gone['id']}")).status_code == 204
    assert_problem(await client.get(f"/documents/{gone['id']}"), 404)
    assert_problem(await client.delete(f"/documents/{gone['id']}"), 404)
    assert_problem(await client.patch(f"/documents/{gone['id']}", json={"pages": 3}), 404)
    assert_problem(await client.patch(f"/documents/{gone['id']}", json={}), 404)
    for params, expected in (
        ({}, [kept["id"]]),
        ({"pages__gte": "0"}, [kept["id"]]),
        ({"id": gone["id"]}, []),
        ({"title": "gone"}, []),
    ):
        page = await list_all(client, "/documents", params)
        assert [d["id"] for d in page["items"]] == expected, params
        assert page["total"] == len(expected)
    # The row is still there, marked, and the response never shows the marker.
    async with engine.connect() as conn:
        query = sa.select(documents.c.deleted_at).where(documents.c.title == "gone")
        marked = (await conn.execute(query)).scalar_one()
    assert marked is not None
    assert "deleted_at" not in kept


async def test_patch(client: httpx.AsyncClient) -> None:
    ann = await _owner(client)
    item = await create(
        client, "/items", {"name": "x", "owner_id": ann, "qty": 1, "data": {"k": 1}}
    )
    path = f"/items/{item['id']}"
    # No changes at all, and changes to the same values (MariaDB reports 0 affected
    # rows when nothing differs), both answer the row.
    response = await client.patch(path, json={})
    assert response.status_code == 200, response.text
    assert response.json() == item
    for version in (2, 3):
        response = await client.patch(path, json={"qty": 1, "name": "x"})
        assert response.status_code == 200, response.text
        kept = {k: v for k, v in response.json().items() if k not in ("updated_at", "version")}
        assert kept == {k: v for k, v in item.items() if k not in ("updated_at", "version")}
        assert response.json()["version"] == version  # a write is a new version
    # Only the sent fields change; nullable ones can be cleared, required ones not.
    changed = (await client.patch(path, json={"qty": None, "data": None})).json()
    assert (changed["qty"], changed["data"], changed["name"]) == (None, None, "x")
    assert changed["updated_at"] >= item["updated_at"]
    page = await list_all(client, "/items", {"data__isnull": "true", "qty__isnull": "true"})
    assert [i["id"] for i in page["items"]] == [item["id"]]
    body = assert_problem(await client.patch(path, json={"name": None}), 422)
    assert "name" in body["detail"]
    assert_problem(await client.patch(path, json={"nope": 1}), 422)
    missing = "0190a6e4-1c5b-7cc0-8d1e-000000000000"
    assert_problem(await client.patch(f"/items/{missing}", json={"qty": 2}), 404)
    assert_problem(await client.patch(f"/items/{missing}", json={}), 404)
    assert_problem(await client.get("/items/not-a-uuid"), 422)


async def test_patch_with_identical_values_through_the_repository(engine: AsyncEngine) -> None:
    """Repository.update answers the row when the database reports no changed rows."""
    repo = Repository(engine, item_resource)
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        await conn.execute(owners.insert().values(id=1, name="o", created_at=now, updated_at=now))
    row = await repo.create({"name": "x", "owner_id": 1, "active": False, "status": "draft"})
    again = await repo.update(row["id"], {"name": "x"})
    assert again is not None
    assert (again["id"], again["name"]) == (row["id"], "x")
    assert await repo.update(uuid.uuid4(), {"name": "x"}) is None


async def test_values_a_column_cannot_hold_are_422(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    ann = await _owner(client)
    base = {"name": "x", "owner_id": ann}
    # `code` is String(12) and its schema has no max_length: the database decides.
    response = await client.post("/items", json={**base, "code": "x" * 13})
    if engine.dialect.name == "sqlite":
        assert response.status_code == 201  # SQLite does not enforce lengths
    else:
        body = assert_problem(response, 422)
        assert body["title"] == "Unstorable value"
    # Refused the same way on every database.
    cases: list[tuple[dict[str, Any], str]] = [
        ({"body": "a\x00b"}, "body"),
        ({"code": "\x00"}, "code"),
        ({"owner_id": 2**31}, "owner_id"),
        ({"owner_id": -(2**70)}, "owner_id"),
        ({"category_id": 2**40}, "category_id"),
        ({"data": {"x": 2**64}}, "data"),
        ({"data": [-(2**63) - 1]}, "data"),
    ]
    for extra, field in cases:
        response = await client.post("/items", json={**base, "name": field, **extra})
        body = assert_problem(response, 422)
        assert body.get("field") == field, body
    # What httpx will not encode: NaN in JSON and lone surrogates.
    raw_bodies = [
        ('"data": NaN', "data"),
        ('"data": {"a": [Infinity]}', "data"),
        ('"body": "\\ud800"', "body"),
        ('"data": {"\\udfff": 1}', "data"),
    ]
    for fragment, field in raw_bodies:
        content = f'{{"name": "n", "owner_id": {ann}, {fragment}}}'
        response = await client.post(
            "/items", content=content, headers={"content-type": "application/json"}
        )
        body = assert_problem(response, 422)
        assert body.get("field", field) == field, body
    item = await create(client, "/items", {**base, "name": "patched"})
    response = await client.patch(f"/items/{item['id']}", json={"body": "\x00"})
    assert_problem(response, 422)
    assert (await list_all(client, "/items"))["total"] == (
        2 if engine.dialect.name == "sqlite" else 1
    )


async def test_uuids_mariadb_refuses(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    """MariaDB's UUID type refuses versions 8-15 of the NCS variant: 422, not 500."""
    ann = await _owner(client)
    token = "e1acc0da-8325-bfd8-1df1-92e52e5b6b8a"
    response = await client.post("/items", json={"name": "x", "owner_id": ann, "token": token})
    if engine.dialect.name == "mysql":
        assert_problem(response, 422)
    else:
        assert response.status_code == 201
        assert response.json()["token"] == token
    # Filtering by such a value is fine everywhere.
    page = await list_all(client, "/items", {"token": token})
    assert page["total"] == (0 if engine.dialect.name == "mysql" else 1)


async def test_unknown_rows_are_404_problems(client: httpx.AsyncClient) -> None:
    missing = "0190a6e4-1c5b-7cc0-8d1e-000000000000"
    for method, path in (
        ("GET", f"/items/{missing}"),
        ("DELETE", f"/items/{missing}"),
        ("GET", "/owners/12345"),
        ("DELETE", "/owners/12345"),
        # Integer ids beyond the column's type name no row (they used to fail in the
        # drivers: SQLite cannot bind 2**63, asyncpg refuses 2**31 for an int4).
        ("GET", "/owners/2147483648"),
        ("GET", "/owners/-9223372036854775809"),
        ("DELETE", "/owners/9223372036854775808"),
        ("PATCH", "/owners/99999999999999999999"),
    ):
        response = await client.request(method, path, json={} if method == "PATCH" else None)
        body = assert_problem(response, 404)
        assert body["instance"] == path.split("?")[0]
