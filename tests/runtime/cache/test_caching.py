"""The service-level wiring: warm-up at start, and deletes that cascade into other cached
entities."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import QueryParams
from support import runtime_service as contract

from microforge.runtime.auth.policy import EntityPolicy, Rule
from microforge.runtime.auth.principal import ANONYMOUS
from microforge.runtime.cache.caching import Caching
from microforge.runtime.cache.config import CacheConfig
from microforge.runtime.cache.repository import CachedRepository
from microforge.runtime.query import parse_list_query
from microforge.runtime.resource import Resource
from microforge.runtime.service_app import Repositories
from microforge.runtime.settings import ServiceSettings

CONFIG = CacheConfig(ttl=300, early_refresh=0, warm=("sort=name",))


def cached(resource: Resource) -> Resource:
    return Resource(
        name=resource.name,
        table=resource.table,
        soft_delete=resource.soft_delete,
        sortable=resource.sortable,
        searchable=tuple(c.name for c in resource.search_columns),
        links=resource.links,
        cache=CONFIG,
    )


async def test_warm_up_loads_the_named_queries_at_start(engine: AsyncEngine) -> None:
    caching = Caching("warm")
    repos = Repositories.build(engine, [cached(contract.owner_resource)], caching)
    owners = repos["Owner"]
    assert isinstance(owners, CachedRepository)
    await owners.create({"name": "ann"})
    await owners.create({"name": "bob"})
    # Anonymous callers list only ann; staff list everyone. Warm-up loads both views.
    rules = {action: Rule.public() for action in ("create", "read", "update", "delete")}
    policy = EntityPolicy("Owner", rules, where={"name": "ann"}, all_rows=["staff"])
    await caching.start({"Owner": policy})
    assert owners.cache.stats.warmed == 2
    loads = owners.cache.stats.loads
    params = QueryParams("sort=name")
    page = await owners.read_page(parse_list_query(params, owners.resource), None, params)
    assert [row["name"] for row in page.data()["items"]] == ["ann", "bob"]
    anonymous = policy.row_scope(ANONYMOUS)
    query = parse_list_query(params, owners.resource)
    page = await owners.read_page(query, anonymous, params)
    assert [row["name"] for row in page.data()["items"]] == ["ann"]
    assert owners.cache.stats.loads == loads  # both served from the warm entries
    await caching.aclose()


async def test_a_cascading_delete_clears_the_caches_it_changes(engine: AsyncEngine) -> None:
    caching = Caching("cascade")
    resources = [cached(r) for r in (contract.owner_resource, contract.category_resource)]
    repos = Repositories.build(engine, [*resources, cached(contract.item_resource)], caching)
    owner = await repos["Owner"].create({"name": "ann"})
    category = await repos["Category"].create({"label": "lamps"})
    item = await repos["Item"].create(
        {"name": "lamp", "active": True, "owner_id": owner["id"], "category_id": category["id"]}
    )
    before = await repos["Item"].read_one(item["id"])
    assert before is not None
    assert before.data()["category_id"] == category["id"]  # cached with the category

    # items.category_id is ON DELETE SET NULL: the delete changes the cached item.
    assert await repos["Category"].delete(category["id"])
    after = await repos["Item"].read_one(item["id"])
    assert after is not None
    assert after.data()["category_id"] is None
    async with engine.connect() as conn:
        stored = await conn.execute(sa.select(contract.items.c.category_id))
        assert stored.scalar_one() is None
    await caching.aclose()


def test_the_bus_needs_a_redis_url() -> None:
    class Settings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="SHOP_", extra="ignore")

    with pytest.raises(ValidationError, match="SHOP_CACHE_BUS needs SHOP_REDIS_URL"):
        Settings(database_url="sqlite+aiosqlite:///x.db", cache_bus=True)
    assert Settings(database_url="sqlite+aiosqlite:///x.db", cache_bus=True, redis_url="redis://h")
