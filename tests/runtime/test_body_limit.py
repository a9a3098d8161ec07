"""Request bodies above the limit are refused with 413 before the app stores anything."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from microforge.gateway.app import create_gateway
from microforge.runtime.body_limit import BodyLimit

LIMIT = 2048


def _app(stored: list[int]) -> BodyLimit:
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        stored.append(len(body))
        return JSONResponse({"size": len(body)})

    return BodyLimit(Starlette(routes=[Route("/", echo, methods=["POST"])]), max_bytes=LIMIT)


async def _chunks(total: int, size: int = 512) -> AsyncIterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


async def test_a_body_at_the_limit_passes() -> None:
    stored: list[int] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(stored))) as client:
        response = await client.post("http://t/", content=b"x" * LIMIT)
    assert response.status_code == 200
    assert stored == [LIMIT]


async def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    stored: list[int] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(stored))) as client:
        response = await client.post("http://t/", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 413
    assert stored == []


async def test_a_streamed_body_is_cut_off_at_the_limit() -> None:
    stored: list[int] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(stored))) as client:
        response = await client.post("http://t/", content=_chunks(LIMIT * 4))
    assert response.status_code == 413
    assert stored == []  # the app never got the whole body


async def test_the_gateway_refuses_large_bodies_at_the_edge() -> None:
    gateway = create_gateway({"svc": "http://127.0.0.1:9"}, max_body_bytes=LIMIT)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway)) as client:
        response = await client.post("http://t/svc/things", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
