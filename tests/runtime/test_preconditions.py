"""Optimistic concurrency: row versions, ETags that name them, and If-Match on PATCH and
DELETE as a compare-and-set, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from support.runtime_api import assert_problem, create
from support.runtime_service import (
    category_resource,
    document_resource,
    documents,
    item_resource,
    owner_resource,
)

from microforge.runtime.auth.policy import RowScope
from microforge.runtime.jsonio import Payload
from microforge.runtime.preconditions import Stale, if_match
from microforge.runtime.problems import Problem
from microforge.runtime.repository import Repository

MISSING = uuid.UUID("0190a6e4-1c5b-7cc0-8d1e-000000000000")

# --- the header ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "versions"),
    [
        ('"v3-abc"', {3}),
        ('"v3-abc", "v12-def"', {3, 12}),
        (' "v3-abc" ,, "v4-x" ', {3, 4}),  # OWS and empty list elements are allowed
        ('"v5-a,b", "v6-c"', {5, 6}),  # a comma inside a tag is part of it
        ('W/"v3-abc"', set()),  # weak tags never match
        ('W/"v3-abc", "v4-x"', {4}),
        ('"1234abcd"', set()),  # a list page's tag names no version
        ('"v0-x", "v01-x", "v-x", "v2147483648-x"', set()),  # no version a row can have
        ('"v2147483647-x"', {2**31 - 1}),
    ],
)
def test_if_match_names_the_versions_of_its_strong_tags(header: str, versions: set[int]) -> None:
    condition = if_match(header)
    assert condition.sent
    assert condition.versions == frozenset(versions)


def test_no_if_match_and_star_accept_any_version() -> None:
    assert if_match(None).versions is None
    assert not if_match(None).sent
    star = if_match(" * ")
    assert (star.sent, star.versions) == (True, None)


@pytest.mark.parametrize(
    "header", ["", " ", ",", "v3-abc", '"v3-abc" "v4"', '"v3-abc', 'W/ "v3"', '*, "v3-a"', '"a b"']
)
def test_a_malformed_if_match_is_400(header: str) -> None:
    with pytest.raises(Problem) as caught:
        if_match(header)
    assert caught.value.status == 400


def test_a_required_if_match_is_428_when_missing() -> None:
    with pytest.raises(Problem) as caught:
        if_match(None, required=True)
    assert caught.value.status == 428
    assert "ETag" in caught.value.detail
    assert if_match('"v1-a"', required=True).versions == {1}


def test_a_missing_row_fails_a_sent_precondition() -> None:
    not_found = Problem(404, "No Item with id 7.")
    assert if_match(None).absent(not_found) is not_found
    for header in ("*", '"v1-x"'):
        failed = if_match(header).absent(not_found)
        assert failed.status == 412
        assert failed.detail.startswith("No Item with id 7.")


def test_row_etags_name_the_version_and_keep_redacted_bodies_apart() -> None:
    row = {"id": 1, "secret": "s", "version": 7}
    full, redacted = Payload.row(row), Payload.row({"id": 1, "version": 7})
    assert full.etag.startswith('"v7-')
    assert redacted.etag.startswith('"v7-')
    assert full.etag != redacted.etag
    assert if_match(full.etag).versions == if_match(redacted.etag).versions == {7}
    # A page is tagged by its body alone.
    assert not Payload.of({"items": [row]}).etag.startswith('"v')


# --- the repository ------------------------------------------------------------------


async def _item(engine: AsyncEngine, **values: Any) -> tuple[Repository, dict[str, Any]]:
    owner = await Repository(engine, owner_resource).create({"name": f"o-{uuid.uuid4().hex[:8]}"})
    repo = Repository(engine, item_resource)
    row = await repo.create(
        {"name": "x", "owner_id": owner["id"], "active": False, "status": "draft", **values}
    )
    return repo, row


async def test_versions_start_at_one_and_grow_with_every_change(engine: AsyncEngine) -> None:
    repo, row = await _item(engine)
    assert row["version"] == 1
    assert (await repo.get(row["id"]) or {})["version"] == 1
    changed = await repo.update(row["id"], {"name": "y"})
    assert changed is not None
    assert changed["version"] == 2
    same = await repo.update(row["id"], {"name": "y"})  # the same values are a write too
    assert same is not None
    assert same["version"] == 3
    untouched = await repo.update(row["id"], {})  # nothing to write: no new version
    assert untouched is not None
    assert untouched["version"] == 3
    assert untouched == await repo.get(row["id"])

    docs = Repository(engine, document_resource)
    doc = await docs.create({"title": "t"})
    assert await docs.delete(doc["id"])
    async with engine.connect() as conn:
        query = sa.select(documents.c.version).where(documents.c.id == doc["id"])
        assert (await conn.execute(query)).scalar_one() == 2  # a soft delete is a change


async def test_a_conditional_update_is_a_compare_and_set(engine: AsyncEngine) -> None:
    repo, row = await _item(engine)
    id = row["id"]
    changed = await repo.update(id, {"name": "y"}, expected=frozenset({1}))
    assert changed is not None
    assert (changed["name"], changed["version"]) == ("y", 2)

    with pytest.raises(Stale) as caught:
        await repo.update(id, {"name": "z"}, expected=frozenset({1}))
    stale = caught.value
    assert (stale.status, stale.current, stale.expected) == (412, 2, {1})
    assert stale.extra == {"current_version": 2, "sent_versions": [1]}
    assert "GET it again" in stale.detail
    with pytest.raises(Stale):
        await repo.update(id, {"name": "z"}, expected=frozenset())  # only weak tags were sent
    with pytest.raises(Stale):
        await repo.update(id, {}, expected=frozenset({1}))  # an empty PATCH is checked too
    assert (await repo.get(id) or {})["name"] == "y"  # none of them wrote

    assert await repo.update(id, {}, expected=frozenset({2})) == await repo.get(id)
    again = await repo.update(id, {"name": "z"}, expected=frozenset({1, 2}))
    assert again is not None
    assert (again["name"], again["version"]) == ("z", 3)

    # A missing row, or one outside the caller's scope, is missing: not "changed".
    assert await repo.update(MISSING, {"name": "z"}, expected=frozenset({1})) is None
    elsewhere = RowScope(equals=(("owner_id", row["owner_id"] + 1000),))
    assert await repo.update(id, {"name": "q"}, elsewhere, expected=frozenset({3})) is None
    assert await repo.update(id, {"name": "q"}, elsewhere, expected=frozenset({1})) is None
    own = RowScope(equals=(("owner_id", row["owner_id"]),))
    with pytest.raises(Stale):
        await repo.update(id, {"name": "q"}, own, expected=frozenset({1}))
    scoped = await repo.update(id, {"name": "q"}, own, expected=frozenset({3}))
    assert scoped is not None
    assert scoped["version"] == 4


@pytest.mark.parametrize("resource", [category_resource, document_resource], ids=["hard", "soft"])
async def test_a_conditional_delete_is_a_compare_and_set(
    engine: AsyncEngine, resource: Any
) -> None:
    repo = Repository(engine, resource)
    values = {"label": "c"} if resource is category_resource else {"title": "t"}
    row = await repo.create(values)
    await repo.update(row["id"], values)  # version 2
    with pytest.raises(Stale) as caught:
        await repo.delete(row["id"], expected=frozenset({1}))
    assert caught.value.current == 2
    assert await repo.get(row["id"]) is not None
    assert await repo.delete(row["id"], expected=frozenset({2}))
    assert await repo.get(row["id"]) is None
    # Gone: missing, not stale (the soft-deleted row is still in the table).
    assert not await repo.delete(row["id"], expected=frozenset({2, 3}))
    missing = MISSING if resource is document_resource else 2**31 - 1
    assert not await repo.delete(missing, expected=frozenset({1}))


async def test_of_writers_holding_one_etag_exactly_one_wins(engine: AsyncEngine) -> None:
    repo, row = await _item(engine)

    async def write(n: int) -> int | Stale:
        try:
            await repo.update(row["id"], {"qty": n}, expected=frozenset({1}))
        except Stale as stale:
            return stale
        return n

    outcomes = await asyncio.gather(*(write(n) for n in range(5)))
    winners = [n for n in outcomes if isinstance(n, int)]
    assert len(winners) == 1, outcomes
    assert {o.current for o in outcomes if isinstance(o, Stale)} == {2}
    stored = await repo.get(row["id"])
    assert stored is not None
    assert (stored["qty"], stored["version"]) == (winners[0], 2)


# --- over HTTP -----------------------------------------------------------------------

FULL_ITEM: dict[str, Any] = {
    "name": "Full",
    "body": "text \u2014 \U0001f600",
    "email": "someone@example.com",
    "url": "https://example.com/path?q=1",
    "qty": 3,
    "big": 2**63 - 1,
    "price": "12.50",
    "ratio": 2,  # a whole number in a float column
    "active": True,
    "born": "2024-02-29",
    "seen_at": "2024-05-01T12:34:56.789012+02:00",
    "token": "0190a6e4-1c5b-7cc0-8d1e-0123456789ab",
    "status": "retired",
    "data": {"b": [1, 2.5, None], "a": {"c": {}}},
}


async def test_if_match_over_http(client: httpx.AsyncClient) -> None:
    owner = await create(client, "/owners", {"name": "ann"})
    item = await create(client, "/items", {**FULL_ITEM, "owner_id": owner["id"]})
    url = f"/items/{item['id']}"
    read = await client.get(url)
    etag = read.headers["etag"]
    assert etag.startswith('"v1-')

    patched = await client.patch(url, json={"qty": 4}, headers={"If-Match": etag})
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == 2
    # The PATCH answers the ETag the next GET gives: the row as RETURNING gave it is the
    # row as a SELECT gives it, byte for byte, on every database.
    again = await client.get(url)
    assert again.content == patched.content
    assert again.headers["etag"] == patched.headers["etag"]

    stale = await client.patch(url, json={"qty": 5}, headers={"If-Match": etag})
    body = assert_problem(stale, 412)
    assert (body["sent_versions"], body["current_version"]) == ([1], 2)
    assert body["type"] == "urn:microforge:problem:stale"
    assert_problem(await client.delete(url, headers={"If-Match": etag}), 412)
    weak = f"W/{again.headers['etag']}"
    assert_problem(await client.delete(url, headers={"If-Match": weak}), 412)
    assert_problem(await client.patch(url, json={}, headers={"If-Match": "v2"}), 400)
    assert (await client.get(url)).json()["qty"] == 4

    both = f"{etag}, {again.headers['etag']}"
    assert (await client.patch(url, json={"qty": 6}, headers={"If-Match": both})).status_code == 200
    assert (await client.delete(url, headers={"If-Match": "*"})).status_code == 204
    # With If-Match, a row that is not there fails the precondition (RFC 9110 13.1.1).
    assert_problem(await client.delete(url, headers={"If-Match": "*"}), 412)
    assert_problem(await client.patch(url, json={"qty": 1}, headers={"If-Match": etag}), 412)
    assert_problem(await client.delete(url), 404)
