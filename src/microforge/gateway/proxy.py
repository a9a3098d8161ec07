"""Forward one request to an upstream service, streaming both bodies.

Nothing is buffered: the request body is relayed to the upstream as it arrives and the
upstream's body is relayed back chunk by chunk, still encoded (`aiter_raw`), so
Content-Length and Content-Encoding stay truthful.
"""

from __future__ import annotations

import http.cookiejar
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio
import httpx
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

log = logging.getLogger("microforge.gateway")

RawHeaders = list[tuple[bytes, bytes]]

# RFC 9110 §7.6.1: meaningful for a single connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade"}
)
# Headers we (re)compute ourselves for the upstream request. Host names the upstream,
# and `Expect: 100-continue` is answered by our own server, not by the upstream.
_REPLACED_UPSTREAM = frozenset(
    {
        b"host",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
    }
)


class UpstreamError(Exception):
    """The upstream could not produce a response; rendered as problem+json by the app."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class _NoCookies(http.cookiejar.CookieJar):
    """The shared client must not remember one user's cookies and replay them for another."""

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


def new_upstream_client(*, timeout: float, connect_timeout: float) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        # The upstream servers apply their own concurrency limits.
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        follow_redirects=False,
        cookies=_NoCookies(),
        # No proxy variables or .netrc credentials: these hops are internal.
        trust_env=False,
    )
    # httpx adds Accept, Accept-Encoding, User-Agent and Connection to every request;
    # a proxy must send only what the client sent.
    client.headers.clear()
    return client


def strip_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """Lower-case names and drop hop-by-hop headers, including those listed in Connection."""
    pairs = [(name.lower(), value) for name, value in headers]
    named = {
        token.strip().lower()
        for name, value in pairs
        if name == b"connection"
        for token in value.split(b",")
    }
    return [
        (name, value)
        for name, value in pairs
        if name not in HOP_BY_HOP and name not in named and not name.startswith(b"proxy-")
    ]


def upstream_request_headers(request: Request, *, prefix: str) -> RawHeaders:
    """The client's end-to-end headers plus X-Forwarded-* describing the original request."""
    kept = strip_hop_by_hop(request.headers.raw)
    headers = [(name, value) for name, value in kept if name not in _REPLACED_UPSTREAM]
    hops = [value.strip() for name, value in kept if name == b"x-forwarded-for"]
    if request.client is not None:
        hops.append(request.client.host.encode("latin-1"))
    chain = b", ".join(hop for hop in hops if hop)
    if chain:
        headers.append((b"x-forwarded-for", chain))
    headers.append((b"x-forwarded-proto", request.url.scheme.encode("latin-1")))
    host = request.headers.get("host")
    if host:
        headers.append((b"x-forwarded-host", host.encode("latin-1")))
    headers.append((b"x-forwarded-prefix", prefix.encode("latin-1")))
    return headers


def _has_body(request: Request) -> bool:
    # Decided from the original headers: only relay a body when the client framed one,
    # so a plain GET does not turn into a chunked request upstream.
    return "content-length" in request.headers or "transfer-encoding" in request.headers


async def _relay_body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


class RelayedResponse(StreamingResponse):
    """Streams an upstream response and always gives its connection back."""

    def __init__(self, upstream: httpx.Response) -> None:
        super().__init__(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            background=BackgroundTask(upstream.aclose),
        )
        # Raw pairs, so repeated headers such as Set-Cookie survive.
        self.raw_headers = strip_hop_by_hop(upstream.headers.raw)
        self._upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Starlette skips the background task when the client goes away mid-stream;
            # closing is idempotent, and shielded so a cancelled request still releases it.
            with anyio.CancelScope(shield=True):
                await self._upstream.aclose()


async def forward(
    client: httpx.AsyncClient,
    request: Request,
    *,
    service: str,
    base_url: str,
    path: str,
) -> Response:
    """Send `request` to `base_url/path` (query string kept) and relay the answer."""
    url = f"{base_url}/{path}"
    query = request.scope.get("query_string", b"")
    if query:
        url += "?" + query.decode("latin-1")
    try:
        upstream_request = client.build_request(
            request.method,
            url,
            headers=upstream_request_headers(request, prefix=f"/{service}"),
            content=_relay_body(request) if _has_body(request) else None,
        )
    except httpx.InvalidURL as exc:
        raise UpstreamError(400, f"cannot forward this path to {service}: {exc}") from exc
    try:
        upstream = await client.send(upstream_request, stream=True)
    except httpx.TimeoutException as exc:
        log.warning("upstream %s timed out: %s %s (%s)", service, request.method, url, exc)
        raise UpstreamError(504, f"service '{service}' did not answer in time") from exc
    except httpx.TransportError as exc:
        log.warning("upstream %s failed: %s %s (%r)", service, request.method, url, exc)
        raise UpstreamError(502, f"service '{service}' is unreachable") from exc
    except ClientDisconnect:
        # The client hung up while uploading; nobody is left to read an answer.
        return Response(status_code=400)
    return RelayedResponse(upstream)
