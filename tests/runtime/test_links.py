"""Many-to-many links: add (idempotent), list, remove, 404s, and cleanup on delete."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from support.runtime_api import assert_problem, create, list_all
from support.runtime_service import item_documents, item_tags

MISSING = "0190a6e4-1c5b-7cc0-8d1e-000000000000"


async def _item(client: httpx.AsyncClient, owner_id: int, name: str) -> dict[str, Any]:
    return await create(client, "/items", {"name": name, "owner_id": owner_id})


async def _link_rows(engine: AsyncEngine, table: sa.Table) -> int:
    async with engine.connect() as conn:
        count: int = (
            await conn.execute(sa.select(sa.func.count()).select_from(table))
        ).scalar_one()
    return count


async def test_add_list_remove(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    owner_id = (await create(client, "/owners", {"name": "ann"}))["id"]
    item = await _item(client, owner_id, "i")
    other = await _item(client, owner_id, "j")
    tags = [await create(client, "/tags", {"name": f"t{n}"}) for n in range(3)]
    path = f"/items/{item['id']}/tags"

    assert await list_all(client, path) == {"items": [], "total": 0, "next_cursor": None}
    for tag in tags:
        assert (await client.put(f"{path}/{tag['id']}")).status_code == 204
    # Adding again changes nothing.
    assert (await client.put(f"{path}/{tags[0]['id']}")).status_code == 204
    assert await _link_rows(engine, item_tags) == 3
    page = await list_all(client, path)
    assert page["total"] == 3
    assert page["next_cursor"] is None
    assert sorted(t["id"] for t in page["items"]) == sorted(t["id"] for t in tags)
    assert page["items"][0] == next(t for t in tags if t["id"] == page["items"][0]["id"])
    # Paging, ordered by the target's id.
    in_order = [t["id"] for t in page["items"]]
    assert in_order == sorted(in_order)
    second = await list_all(client, path, {"limit": "2", "offset": "1"})
    assert [t["id"] for t in second["items"]] == in_order[1:3]
    assert second["total"] == 3
    # Links are per source row.
    assert (await list_all(client, f"/items/{other['id']}/tags"))["total"] == 0

    assert (await client.delete(f"{path}/{tags[1]['id']}")).status_code == 204
    body = assert_problem(await client.delete(f"{path}/{tags[1]['id']}"), 404)
    assert "not linked" in body["detail"]
    assert_problem(await client.delete(f"/items/{other['id']}/tags/{tags[0]['id']}"), 404)
    assert (await list_all(client, path))["total"] == 2


async def test_missing_rows_are_404(client: httpx.AsyncClient) -> None:
    owner_id = (await create(client, "/owners", {"name": "ann"}))["id"]
    item = await _item(client, owner_id, "i")
    tag = await create(client, "/tags", {"name": "t"})
    for method, path, mentions in (
        ("GET", f"/items/{MISSING}/tags", "Item"),
        ("PUT", f"/items/{MISSING}/tags/{tag['id']}", "Item"),
        ("PUT", f"/items/{item['id']}/tags/{MISSING}", "Tag"),
        ("DELETE", f"/items/{MISSING}/tags/{tag['id']}", "Item"),
        ("DELETE", f"/items/{item['id']}/tags/{MISSING}", "Tag"),
    ):
        body = assert_problem(await client.request(method, path), 404)
        assert mentions in body["detail"], (method, path, body)
    assert_problem(await client.put(f"/items/{item['id']}/tags/not-a-uuid"), 422)
    assert_problem(await client.get(f"/items/{item['id']}/tags", params={"limit": "0"}), 422)


async def test_deleting_either_side_removes_links(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    owner_id = (await create(client, "/owners", {"name": "ann"}))["id"]
    first, second = await _item(client, owner_id, "a"), await _item(client, owner_id, "b")
    kept, dropped = (
        await create(client, "/tags", {"name": "k"}),
        await create(client, "/tags", {"name": "d"}),
    )
    for item in (first, second):
        for tag in (kept, dropped):
            assert (await client.put(f"/items/{item['id']}/tags/{tag['id']}")).status_code == 204
    assert await _link_rows(engine, item_tags) == 4
    # The target side.
    assert (await client.delete(f"/tags/{dropped['id']}")).status_code == 204
    assert await _link_rows(engine, item_tags) == 2
    page = await list_all(client, f"/items/{first['id']}/tags")
    assert [t["id"] for t in page["items"]] == [kept["id"]]
    # The source side.
    assert (await client.delete(f"/items/{first['id']}")).status_code == 204
    assert await _link_rows(engine, item_tags) == 1
    assert_problem(await client.get(f"/items/{first['id']}/tags"), 404)
    assert (await list_all(client, f"/items/{second['id']}/tags"))["total"] == 1


async def test_soft_deleted_targets_drop_out_of_links(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    owner_id = (await create(client, "/owners", {"name": "ann"}))["id"]
    item = await _item(client, owner_id, "i")
    docs = [await create(client, "/documents", {"title": f"d{n}"}) for n in range(2)]
    path = f"/items/{item['id']}/documents"
    for doc in docs:
        assert (await client.put(f"{path}/{doc['id']}")).status_code == 204
    assert (await client.delete(f"/documents/{docs[0]['id']}")).status_code == 204
    page = await list_all(client, path)
    assert [d["id"] for d in page["items"]] == [docs[1]["id"]]
    assert page["total"] == 1
    # A soft-deleted row cannot be linked or unlinked any more.
    assert_problem(await client.put(f"{path}/{docs[0]['id']}"), 404)
    assert_problem(await client.delete(f"{path}/{docs[0]['id']}"), 404)
    # The link row itself stays (nothing was deleted from the database).
    assert await _link_rows(engine, item_documents) == 2
