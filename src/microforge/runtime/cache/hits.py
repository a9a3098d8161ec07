"""Cache hits answered before routing: GET one and list pages of cached entities.

A hit costs a few microseconds; FastAPI's routing, dependency resolution and path
validation cost several times that, which capped a cached GET at about 1.6x an uncached
one (docs/benchmarks.md). This middleware answers hits itself with the very checks the
generated routes make (authentication, the entity's guard, field redaction, the same
ETag and Cache-Control) and hands everything else, misses and errors included, to the
routes unchanged: a 401, 403, 404 or 422 is always the route's own answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..auth.guard import Guard, Guards
from ..http_cache import HttpCaching
from .caching import Caching
from .repository import CachedRepository


@dataclass(frozen=True, slots=True)
class _Target:
    repo: CachedRepository
    guard: Guard
    parse_id: Callable[[str], Any]
    one: HttpCaching
    page: HttpCaching


class CachedReads:
    def __init__(self, app: ASGIApp, caching: Caching) -> None:
        self.app = app
        self._caching = caching
        self._targets: dict[str, _Target] | None = None  # by collection, built on first use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            response = await self._hit(scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _hit(self, scope: Scope) -> Response | None:
        parts = scope["path"].split("/")  # "/products/<id>" -> ["", "products", "<id>"]
        if len(parts) not in (2, 3) or parts[0]:
            return None
        targets = self._targets if self._targets is not None else self._build(scope)
        target = targets.get(parts[1])
        if target is None:
            return None
        try:
            return await self._answer(scope, target, parts[2] if len(parts) == 3 else None)
        except Exception:  # any problem is the route's to report, with its own status
            return None

    async def _answer(self, scope: Scope, target: _Target, raw_id: str | None) -> Response | None:
        request = Request(scope)
        guard = target.guard
        caller = await guard.caller(request)
        if raw_id is None:
            params = request.query_params
            page = await target.repo.cached_page(params, guard.list_scope(caller, params))
            if page is None:
                return None
            response = target.page.respond(request, guard.shown_page(caller, page))
        else:
            id = target.parse_id(raw_id)
            item = await target.repo.cached_one(id, guard.scope(caller, "read"))
            if item is None:
                return None
            response = target.one.respond(request, guard.shown(caller, item))
        target.repo.cache.stats.served_early += 1
        return response

    def _build(self, scope: Scope) -> dict[str, _Target]:
        guards: Guards = scope["app"].state.guards
        targets = {}
        for name, repo in self._caching.repositories.items():
            path = repo.resource.path
            if path.startswith("/") and name in guards:
                targets[path[1:]] = _target(repo, guards[name])
        self._targets = targets
        return targets


def _target(repo: CachedRepository, guard: Guard) -> _Target:
    def http(action: str) -> HttpCaching:  # exactly as the generated routes build it
        return HttpCaching.of(repo.config, guard.policy, action)

    return _Target(
        repo, guard, _id_parser(repo.resource.id_python_type), http("read"), http("list")
    )


def _id_parser(kind: type) -> Callable[[str], Any]:
    if kind is int:
        return _integer
    if kind is uuid.UUID:
        return _uuid
    raise TypeError(f"unsupported id type {kind.__name__}")


def _uuid(raw: str) -> uuid.UUID:
    if len(raw) != 36:  # the canonical form only; other spellings go to the route
        raise ValueError(raw)
    return uuid.UUID(raw)


def _integer(raw: str) -> int:
    # Plain digits only; anything FastAPI might read differently goes to the route.
    if not raw.isascii() or not raw.lstrip("-").isdigit():
        raise ValueError(raw)
    return int(raw)
