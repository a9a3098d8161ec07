"""Manual invalidation and statistics over HTTP, and the Prometheus metrics.

With auth, only the spec's admin roles may use /_cache; without auth the service is open
anyway. /metrics is the Prometheus scrape target (with auth, scrape it with an admin token).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import HTTPConnection
from starlette.responses import Response

from ..auth.anonymous import anonymous
from ..auth.authenticate import authenticate
from ..auth.policy import forbidden, unauthenticated
from ..auth.principal import Principal
from ..jsonio import JSONBytes
from .caching import Caching
from .stats import CacheCollector

_PROBLEM: dict[int | str, dict[str, Any]] = {
    code: {"content": {"application/problem+json": {}}} for code in (401, 403, 404)
}


def cache_router(caching: Caching, admin_roles: frozenset[str] | None) -> APIRouter:
    router = APIRouter(tags=["cache"])

    async def administrator(request: HTTPConnection) -> Principal:
        if admin_roles is None:
            return await anonymous(request)
        caller = await authenticate(request)
        if not caller.authenticated:
            raise unauthenticated("Authentication is required.")
        if caller.roles.isdisjoint(admin_roles):
            raise forbidden("Only administrators may manage the cache.")
        return caller

    admin = [Depends(administrator)]

    @router.get(
        "/_cache", summary="Cache statistics per entity", dependencies=admin, responses=_PROBLEM
    )
    async def statistics() -> Response:
        return JSONBytes(caching.stats())

    @router.delete(
        "/_cache/{entity}",
        status_code=204,
        summary="Drop every cached entry of an entity, on every instance",
        dependencies=admin,
        responses=_PROBLEM,
    )
    async def clear(entity: str) -> Response:
        await caching.cached(entity).cache.clear()
        return Response(status_code=204)

    @router.delete(
        "/_cache/{entity}/{id}",
        status_code=204,
        summary="Drop one cached row, on every instance",
        dependencies=admin,
        responses=_PROBLEM,
    )
    async def forget(entity: str, id: str) -> Response:
        repo = caching.cached(entity)
        await repo.cache.forget(id)
        await repo.cache.written(None)  # list pages may hold the row too
        return Response(status_code=204)

    registry = CollectorRegistry(auto_describe=True)
    registry.register(CacheCollector(caching.service, caching.stats))

    # The counters tell how the service is used: for administrators too.
    @router.get("/metrics", include_in_schema=False, dependencies=admin)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
