"""seed.load_seed: idempotent, resolves `{relation: {field: value}}` lookups, clear errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine
from support.runtime_api import list_all
from support.runtime_service import ALL, SEED_SCHEMAS, documents, owners

from microforge.runtime.seed import SeedError, load_seed

SeedRows = list[tuple[str, type[BaseModel], list[dict[str, Any]]]]


def rows(**by_entity: list[dict[str, Any]]) -> SeedRows:
    return [(name, SEED_SCHEMAS[name], items) for name, items in by_entity.items()]


SEED = rows(
    Owner=[{"name": "ann"}, {"name": "bob"}],
    Category=[{"label": "c1"}, {"label": "twin"}, {"label": "twin"}],
    Tag=[{"name": "t1"}, {"name": "t2"}],
    Document=[{"title": "d1", "pages": 3}, {"title": "d2"}],
    Item=[
        {
            "name": "i1",
            "owner": {"name": "ann"},
            "category": {"label": "c1"},
            "price": "1.50",
            "seen_at": "2024-01-01T00:30:00+01:00",
            "data": {"k": [1, None]},
        },
        {"name": "i2", "owner": {"name": "bob"}, "status": "active"},
    ],
)


async def _count(engine: AsyncEngine, table: sa.Table) -> int:
    async with engine.connect() as conn:
        count: int = (
            await conn.execute(sa.select(sa.func.count()).select_from(table))
        ).scalar_one()
    return count


async def test_seed_is_idempotent_and_resolves_lookups(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    first = await load_seed(engine, ALL, SEED)
    assert first == {"Owner": 2, "Category": 3, "Tag": 2, "Document": 2, "Item": 2}
    second = await load_seed(engine, ALL, SEED)
    assert second == dict.fromkeys(first, 0)
    assert await _count(engine, owners) == 2

    people = {o["name"]: o["id"] for o in (await list_all(client, "/owners"))["items"]}
    labels = {c["label"]: c["id"] for c in (await list_all(client, "/categories"))["items"]}
    items = {i["name"]: i for i in (await list_all(client, "/items"))["items"]}
    assert items["i1"]["owner_id"] == people["ann"]
    assert items["i1"]["category_id"] == labels["c1"]
    assert items["i2"]["owner_id"] == people["bob"]
    assert items["i2"]["category_id"] is None
    # Values pass the schema and round-trip like API writes.
    assert items["i1"]["price"] == "1.50"
    assert items["i1"]["seen_at"] == "2023-12-31T23:30:00+00:00"
    assert items["i1"]["data"] == {"k": [1, None]}
    assert items["i2"]["status"] == "active"
    assert {i["version"] for i in items.values()} == {1}  # If-Match works on seeded rows
    page = await list_all(client, "/items", {"data__isnull": "true"})
    assert [i["name"] for i in page["items"]] == ["i2"]
    # UUID ids come from the row's position: the same on every run and database.
    docs = (await list_all(client, "/documents", {"sort": "title"}))["items"]
    again = await load_seed(engine, ALL, rows(Document=[{"title": "renamed"}, {"title": "x"}]))
    assert again == {"Document": 0}
    assert [
        d["id"] for d in (await list_all(client, "/documents", {"sort": "title"}))["items"]
    ] == [d["id"] for d in docs]


async def test_seed_skips_rows_that_were_soft_deleted(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await load_seed(engine, ALL, SEED)
    doc = (await list_all(client, "/documents", {"title": "d1"}))["items"][0]
    assert (await client.delete(f"/documents/{doc['id']}")).status_code == 204
    assert await load_seed(engine, ALL, SEED) == dict.fromkeys(
        ("Owner", "Category", "Tag", "Document", "Item"), 0
    )
    assert (await client.get(f"/documents/{doc['id']}")).status_code == 404  # not revived
    assert await _count(engine, documents) == 2


BAD_SEEDS: list[tuple[SeedRows, str]] = [
    # Lookups: several matches, none, an unknown field, nothing to look up by.
    (
        rows(
            Owner=[{"name": "ann"}],
            Category=[{"label": "twin"}, {"label": "twin"}],
            Item=[{"name": "i", "owner": {"name": "ann"}, "category": {"label": "twin"}}],
        ),
        "seed row Item[0]: more than one categories row matches {'label': 'twin'}",
    ),
    (
        rows(Owner=[{"name": "ann"}], Item=[{"name": "i", "owner": {"name": "zed"}}]),
        "seed row Item[0]: no owners row matches {'name': 'zed'}",
    ),
    (
        rows(Owner=[{"name": "ann"}], Item=[{"name": "i", "owner": {"nickname": "ann"}}]),
        "seed row Item[0]: owners has no field 'nickname'",
    ),
    (
        rows(Owner=[{"name": "ann"}], Item=[{"name": "i", "owner": {}}]),
        "seed row Item[0]: give fields to find the owners row by",
    ),
    # Rows the schema refuses.
    (rows(Owner=[{"name": "ok"}, {"name": ""}]), "seed row Owner[1]: "),
    (rows(Owner=[{"name": "ok", "age": 3}]), "seed row Owner[0]: "),
    # Rows the database refuses: a unique value twice, a missing reference, NUL.
    (rows(Owner=[{"name": "same"}, {"name": "same"}]), "seed row Owner[1]: Another row"),
    (rows(Tag=[{"name": "same"}, {"name": "same"}]), "seed row Tag[1]: Another row"),
    (rows(Item=[{"name": "i", "owner_id": 42}]), "seed row Item[0]: A referenced row"),
    (rows(Document=[{"title": "a\x00b"}]), "seed row Document[0]: 'title' may not contain NUL"),
]


async def test_seed_errors_name_the_row_and_write_nothing(engine: AsyncEngine) -> None:
    for seed, message in BAD_SEEDS:
        with pytest.raises(SeedError) as caught:
            await load_seed(engine, ALL, seed)
        assert str(caught.value).startswith(message), str(caught.value)
        # One transaction: all or nothing, so the next case starts from empty tables.
        assert await _count(engine, owners) == 0, message
