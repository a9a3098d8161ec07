"""The FastAPI application shell every generated service shares."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import HTMLResponse, Response

from .auth.peers import Peers
from .auth.tokens import TokenVerifier
from .body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimit
from .cache.admin import cache_router
from .cache.caching import Caching
from .cache.hits import CachedReads
from .idempotency.handler import Idempotency
from .jsonio import JSONBytes
from .problems import install_problem_handlers, problem_response
from .repository import Repository
from .resource import Resource


class Repositories(dict[str, Repository]):
    """One repository per entity of a service, by entity name."""

    @classmethod
    def build(
        cls, engine: AsyncEngine, resources: Iterable[Resource], caching: Caching | None = None
    ) -> Repositories:
        if caching is None:
            return cls({r.name: Repository(engine, r) for r in resources})
        repos = cls({r.name: caching.repository(engine, r) for r in resources})
        caching.link(repos)
        return repos


def create_service_app(
    *,
    title: str,
    version: str,
    description: str,
    engine: AsyncEngine,
    routers: Iterable[APIRouter] = (),
    ready_timeout: float = 2.0,
    token_verifier: TokenVerifier | None = None,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    peers: Peers | None = None,
    caching: Caching | None = None,
    admin_roles: frozenset[str] | None = None,
    idempotency: Idempotency | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if caching is not None:
            guards = getattr(app.state, "guards", None)
            await caching.start(guards.policies if guards is not None else None)
        if idempotency is not None:
            await idempotency.start()  # purges expired keys now and then
        yield
        if idempotency is not None:
            await idempotency.aclose()
        if caching is not None:
            await caching.aclose()  # flushes write-back changes while the database is up
        if peers is not None:
            await peers.aclose()
        if token_verifier is not None:
            await token_verifier.aclose()
        await engine.dispose()

    app = FastAPI(
        title=title,
        version=version,
        description=description,
        lifespan=lifespan,
        default_response_class=JSONBytes,
        openapi_url=None,  # served below, aware of the gateway prefix
        docs_url=None,
        redoc_url=None,
    )
    app.state.engine = engine  # for tests and user code; routes get repositories directly
    app.state.token_verifier = token_verifier  # read by runtime.auth.authenticate
    app.state.peers = peers  # the other services, called with this one's own credentials
    app.state.caching = caching  # caches by entity: app.state.caching.cached("Product")
    app.state.idempotency = idempotency  # for custom routes: idempotency.route(policy).run(...)
    if caching is not None and caching.repositories:
        app.add_middleware(CachedReads, caching=caching)  # innermost: just before routing
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if cors_origins:
        # Closed unless origins are configured: browsers elsewhere cannot call the API.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-Match"],
            # Response headers a browser's script may read besides the CORS-safelisted ones.
            expose_headers=[
                "ETag",
                "Location",
                "Retry-After",
                "Idempotent-Replayed",
                "Idempotency-Key-Expires",
            ],
        )
    install_problem_handlers(app)
    app.include_router(health_router(engine, ready_timeout))
    app.include_router(docs_router(app))
    if caching is not None:
        app.include_router(cache_router(caching, admin_roles))
    for router in routers:
        app.include_router(router)
    return app


def health_router(engine: AsyncEngine, timeout: float) -> APIRouter:
    router = APIRouter(prefix="/health", tags=["health"])

    @router.get("/live", summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready", summary="The database answers", responses={503: {}})
    async def ready() -> Response:
        try:
            async with asyncio.timeout(timeout), engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means not ready; say which
            return problem_response(
                503, f"Database unavailable: {type(exc).__name__}", title="Not ready"
            )
        return JSONBytes({"status": "ok", "database": "ok"})

    return router


def docs_router(app: FastAPI) -> APIRouter:
    """OpenAPI and docs pages that work both directly and behind the gateway's /{service}."""
    router = APIRouter(include_in_schema=False)

    @router.get("/openapi.json")
    async def openapi(request: Request) -> Response:
        schema: dict[str, Any] = app.openapi()
        prefix = request.headers.get("x-forwarded-prefix", "").rstrip("/")
        if prefix.startswith("/") and "//" not in prefix:
            schema = copy.copy(schema)
            schema["servers"] = [{"url": prefix}]
        return JSONBytes(schema)

    @router.get("/docs")
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="openapi.json", title=f"{app.title} API")

    @router.get("/redoc")
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="openapi.json", title=f"{app.title} API")

    return router
