"""The edge gateway: one public entry point in front of every generated service.

`/{service}/...` is proxied to that service with the prefix stripped; `/` lists the
services; `/health/live` and `/health/ready` serve orchestrators. Every error the gateway
itself produces is RFC 9457 problem+json.

Given a token verifier, the gateway also checks every bearer token it sees (defence in
depth: the services verify tokens themselves); CORS stays closed unless origins are given.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from microforge.gateway.proxy import UpstreamError, forward, new_upstream_client
from microforge.runtime.auth.tokens import InvalidToken, KeysUnavailable, TokenVerifier
from microforge.runtime.body_limit import BodyLimit

PROBLEM_JSON = "application/problem+json"
# A service name is one URL path segment. "health" would be shadowed by our own probes.
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
RESERVED_NAMES = frozenset({"health"})
_REQUEST_ID_MAX = 200


# -- configuration ----------------------------------------------------------------------


def check_service_name(name: str) -> str:
    if not _SERVICE_NAME.match(name):
        raise ValueError(
            f"invalid service name {name!r}: use letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    if name in RESERVED_NAMES:
        raise ValueError(f"service name {name!r} is reserved for the gateway's own endpoints")
    return name


def check_base_url(url: str) -> str:
    """Validate an upstream base URL and return it without a trailing slash."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"invalid URL {url!r}: expected http://HOST[:PORT][/PATH]")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ValueError(f"invalid URL {url!r}: port must be 1-65535")
    if parsed.query or parsed.fragment or parsed.userinfo:
        raise ValueError(f"invalid URL {url!r}: a base URL takes no credentials, query or fragment")
    return url.rstrip("/")


def check_origin(origin: str) -> str:
    """Validate a CORS origin (`https://app.example.com[:port]`), without a trailing slash."""
    value = origin.strip().rstrip("/")
    if value == "*":
        # Credentials are allowed, so a wildcard would hand every site the user's session.
        raise ValueError("invalid CORS origin '*': list the exact origins that may call the API")
    try:
        parsed = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid CORS origin {origin!r}: {exc}") from exc
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.host
        or parsed.raw_path not in (b"", b"/")
        or parsed.query
        or parsed.fragment
        or parsed.userinfo
    ):
        raise ValueError(f"invalid CORS origin {origin!r}: expected http(s)://HOST[:PORT]")
    return value


def parse_route(value: str) -> tuple[str, str]:
    """Parse a `NAME=URL` command-line route."""
    name, sep, url = value.partition("=")
    if not sep or not name.strip() or not url.strip():
        raise ValueError(
            f"invalid route {value!r}: expected NAME=URL, e.g. catalog=http://127.0.0.1:8101"
        )
    return check_service_name(name.strip()), check_base_url(url.strip())


# -- responses --------------------------------------------------------------------------


def problem(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An RFC 9457 problem document; `about:blank` means the status code says it all."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


class EdgeHeadersMiddleware:
    """X-Request-ID on the way in and out, and a Date on the gateway's own answers.

    The id is put into the request scope, so the proxy forwards it like any other
    header. Date: the gateway's server runs with its own Date header off, so a proxied
    response carries exactly one Date (the upstream's) and our own responses get one here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != b"x-request-id"]
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        request_id = incoming if _acceptable_id(incoming) else uuid.uuid4().hex.encode()
        scope = dict(scope)
        scope["headers"] = [*headers, (b"x-request-id", request_id)]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                out.append((b"x-request-id", request_id))
                if not any(k == b"date" for k, _ in out):
                    out.append((b"date", formatdate(usegmt=True).encode()))
                message = {**message, "headers": out}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _acceptable_id(value: bytes) -> bool:
    # Echoed into logs and other services: keep it short and printable.
    return 0 < len(value) <= _REQUEST_ID_MAX and all(0x21 <= b <= 0x7E for b in value)


_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class EdgeAuthMiddleware:
    """Identity headers for the services' logs, and bearer tokens checked at the edge.

    Client-sent `X-Auth-*` headers are always dropped: only the gateway may set them.
    With a verifier, a request carrying `Authorization: Bearer ...` must hold a valid
    token (else 401 here, before any service sees it) and gets `X-Auth-Subject` and
    `X-Auth-Roles`; requests without a bearer token pass through, the services decide.
    """

    def __init__(self, app: ASGIApp, verifier: TokenVerifier | None) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if not k.startswith(b"x-auth-")]
        if self.verifier is not None:
            refusal, identity = await self._check(headers)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            headers += identity
        await self.app({**scope, "headers": headers}, receive, send)

    async def _check(
        self, headers: list[tuple[bytes, bytes]]
    ) -> tuple[Response | None, list[tuple[bytes, bytes]]]:
        assert self.verifier is not None
        values = [v for k, v in headers if k == b"authorization"]
        bearer = [
            rest
            for scheme, _, rest in (v.strip().partition(b" ") for v in values)
            if scheme.lower() == b"bearer"
        ]
        if not bearer:
            return None, []  # no token, or another scheme: for the services to judge
        if len(values) > 1:
            # Which one would a service read? Refuse rather than guess.
            return problem(401, "send one Authorization header", headers=_CHALLENGE), []
        token = bearer[0].strip().decode("latin-1")
        try:
            principal = await self.verifier.verify(token)
        except KeysUnavailable:
            detail = "access tokens cannot be verified right now; try again shortly"
            return problem(503, detail, headers={"Retry-After": "10"}), []
        except InvalidToken:
            detail = "the access token is malformed, expired or not valid here"
            return problem(401, detail, headers=_CHALLENGE), []
        subject = principal.subject.encode()
        roles = ",".join(sorted(principal.roles)).encode()
        if not (_printable(subject) and _printable(roles)):
            return None, []  # informational only: never let odd bytes split a header
        return None, [(b"x-auth-subject", subject), (b"x-auth-roles", roles)]


def _printable(value: bytes) -> bool:
    return all(0x20 <= b != 0x7F for b in value)


# -- the application --------------------------------------------------------------------


class _Gateway:
    def __init__(
        self,
        routes: dict[str, str],
        *,
        timeout: float,
        connect_timeout: float,
        title: str,
        verifier: TokenVerifier | None,
    ) -> None:
        self.routes = routes
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.title = title
        self.verifier = verifier
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("the gateway's lifespan has not started")
        return self._client

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # One pooled client for all requests: keep-alive connections to every upstream.
        async with new_upstream_client(
            timeout=self.timeout, connect_timeout=self.connect_timeout
        ) as client:
            self._client = client
            try:
                yield
            finally:
                self._client = None
                if self.verifier is not None:
                    await self.verifier.aclose()

    async def index(self, request: Request) -> Response:
        services = [
            {
                "name": name,
                "url": f"/{name}/",
                "docs": f"/{name}/docs",
                "openapi": f"/{name}/openapi.json",
            }
            for name in self.routes
        ]
        return JSONResponse({"name": self.title, "services": services})

    async def live(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        names = list(self.routes)
        results = await asyncio.gather(*(self._probe(self.routes[name]) for name in names))
        services = dict(zip(names, results, strict=True))
        healthy = all(result["status"] == "ok" for result in results)
        return JSONResponse(
            {"status": "ok" if healthy else "unavailable", "services": services},
            status_code=200 if healthy else 503,
        )

    async def _probe(self, base_url: str) -> dict[str, Any]:
        # Probes must stay quick even when the proxy timeout is generous.
        timeout = httpx.Timeout(min(self.timeout, 5.0), connect=min(self.connect_timeout, 2.0))
        try:
            response = await self.client.get(f"{base_url}/health/ready", timeout=timeout)
        except httpx.TimeoutException:
            return {"status": "unavailable", "detail": "timed out"}
        except httpx.TransportError as exc:
            return {"status": "unavailable", "detail": f"unreachable ({type(exc).__name__})"}
        status = "ok" if response.status_code == 200 else "unavailable"
        return {"status": status, "http_status": response.status_code}

    async def service_root(self, request: Request) -> Response:
        service = request.path_params["service"]
        if service not in self.routes:
            return self._unknown(service, request)
        query = request.url.query
        return RedirectResponse(f"/{service}/" + (f"?{query}" if query else ""), status_code=307)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Proxy `/{service}/{path}`. Being a plain ASGI app (not a request -> response
        function) makes Starlette route every method here, even unusual ones."""
        request = Request(scope, receive)
        service = request.path_params["service"]
        base_url = self.routes.get(service)
        if base_url is None:
            response: Response = self._unknown(service, request)
        else:
            path = _upstream_path(scope, service)
            response = await forward(
                self.client, request, service=service, base_url=base_url, path=path
            )
        await response(scope, receive, send)

    def _unknown(self, service: str, request: Request) -> Response:
        known = ", ".join(sorted(self.routes)) or "none"
        return problem(
            404, f"no service named '{service}' (known: {known})", instance=request.url.path
        )


def _upstream_path(scope: Scope, service: str) -> str:
    """What follows `/{service}/`, percent-encoded exactly as the client sent it."""
    prefix = f"{scope.get('root_path', '')}/{service}/".encode("latin-1")
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes) and raw_path.startswith(prefix):
        return raw_path[len(prefix) :].decode("latin-1")
    path: str = scope["path_params"]["path"]
    return quote(path, safe="/:@!$&'()*+,;=~")


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, exc.detail, instance=request.url.path, headers=exc.headers)


async def _upstream_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UpstreamError)
    return problem(exc.status, exc.detail, instance=request.url.path)


async def _internal_error(request: Request, exc: Exception) -> Response:
    return problem(500, "the gateway failed to handle this request", instance=request.url.path)


GATEWAY_MAX_BODY_BYTES = 8 * 1024 * 1024


def create_gateway(
    routes: dict[str, str],
    *,
    timeout: float = 30.0,
    connect_timeout: float = 5.0,
    title: str = "microforge gateway",
    token_verifier: TokenVerifier | None = None,
    cors_origins: Iterable[str] = (),
    max_body_bytes: int = GATEWAY_MAX_BODY_BYTES,
) -> Starlette:
    """Build the gateway app for `routes` ({service name: base URL}).

    `token_verifier` turns on bearer-token checks at the edge (the gateway closes it at
    shutdown). `cors_origins` are the browser origins allowed to call, with credentials;
    none means no CORS headers at all.

    Raises ValueError for a service name that is not a single path segment (or is
    reserved), for a base URL that is not http(s)://host[:port][/path] and for an
    origin that is not http(s)://host[:port].
    """
    checked = {check_service_name(name): check_base_url(url) for name, url in routes.items()}
    origins = list(dict.fromkeys(check_origin(origin) for origin in cors_origins))
    gateway = _Gateway(
        checked,
        timeout=timeout,
        connect_timeout=connect_timeout,
        title=title,
        verifier=token_verifier,
    )
    # Outermost first: CORS answers preflights and decorates even the edge's 401s, so a
    # browser app can read why it was refused.
    middleware = [Middleware(EdgeHeadersMiddleware)]
    if origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_credentials=True,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Accept",
                    "X-Request-ID",
                    "Idempotency-Key",  # safe retries of POST and PATCH
                    "If-Match",  # optimistic concurrency
                    "If-None-Match",
                ],
                expose_headers=[
                    "Location",
                    "Retry-After",
                    "X-Request-ID",
                    "ETag",
                    "Idempotent-Replayed",
                    "Idempotency-Key-Expires",
                ],
            )
        )
    middleware.append(Middleware(EdgeAuthMiddleware, verifier=token_verifier))
    # Services cap bodies too (1 MiB by default); the edge stops floods before they stream.
    middleware.append(Middleware(BodyLimit, max_bytes=max_body_bytes))
    app = Starlette(
        routes=[
            Route("/", gateway.index, methods=["GET"]),
            Route("/health/live", gateway.live, methods=["GET"]),
            Route("/health/ready", gateway.ready, methods=["GET"]),
            Route("/{service}", gateway.service_root, methods=["GET"]),
            Route("/{service}/{path:path}", gateway),  # _Gateway.__call__
        ],
        middleware=middleware,
        exception_handlers={
            HTTPException: _http_exception,
            UpstreamError: _upstream_error,
            Exception: _internal_error,
        },
        lifespan=gateway.lifespan,
    )
    app.state.token_verifier = token_verifier
    return app
