"""A tiny upstream service for gateway and supervisor tests.

Run it as a real server: `python upstream_app.py PORT`. It prints one line once it is
listening, which the supervisor tests use to check prefixed output.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

SMALL_BODY = 64 * 1024


def stream_payload(size: int, seed: int) -> bytes:
    """The deterministic bytes /stream sends, so tests can recompute them."""
    return random.Random(seed).randbytes(size)


class Echo:
    """Reports what arrived. An ASGI class (not a function) so every method lands here."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _echo(scope, receive, send)


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive)
    digest = hashlib.sha256()
    length = 0
    small = bytearray()
    async for chunk in request.stream():
        digest.update(chunk)
        length += len(chunk)
        if len(small) < SMALL_BODY:
            small += chunk[: SMALL_BODY - len(small)]
    body = {
        "method": request.method,
        "path": request.url.path,
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query": scope["query_string"].decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
        "body": small.decode("utf-8", errors="replace"),
        "body_length": length,
        "body_sha256": digest.hexdigest(),
    }
    await JSONResponse(body)(scope, receive, send)


async def stream(request: Request) -> Response:
    size = int(request.query_params.get("size", "5242880"))
    chunk = int(request.query_params.get("chunk", "65536"))
    seed = int(request.query_params.get("seed", "1"))
    payload = stream_payload(size, seed)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, size, chunk):
            yield payload[start : start + chunk]
            await asyncio.sleep(0)  # let the server flush between chunks

    # No Content-Length: the body goes out chunked, as real streaming endpoints do.
    headers = {"x-body-sha256": hashlib.sha256(payload).hexdigest()}
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("seconds", "5")))
    return JSONResponse({"slept": True})


async def cookies(request: Request) -> Response:
    response = JSONResponse({"cookies": 2})
    response.set_cookie("session", "abc", httponly=True)
    response.set_cookie("theme", "dark")
    return response


async def hop(request: Request) -> Response:
    response = Response(b"hop", media_type="text/plain")
    response.headers.append("connection", "x-upstream-hop")
    response.headers.append("x-upstream-hop", "secret")
    response.headers.append("keep-alive", "timeout=5")
    response.headers.append("proxy-authenticate", "Basic")
    response.headers.append("trailer", "x-checksum")
    response.headers.append("upgrade", "h2c")
    response.headers.append("x-end-to-end", "kept")
    return response


async def redirect(request: Request) -> Response:
    return Response(status_code=302, headers={"location": "/catalog/items/7"})


async def ready(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/echo", Echo()),
        Route("/echo/{rest:path}", Echo()),
        Route("/stream", stream),
        Route("/slow", slow),
        Route("/cookies", cookies),
        Route("/hop", hop),
        Route("/redirect", redirect),
        Route("/health/ready", ready),
    ]
)


def main() -> None:
    port = int(sys.argv[1])
    # A short graceful-shutdown window: /slow requests abandoned by a test's gateway
    # must not hold up the server's exit.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        # Announce only once the socket is bound; the supervisor test looks for this line.
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"upstream_app listening on 127.0.0.1:{port}", flush=True)
        await task

    asyncio.run(serve())


if __name__ == "__main__":
    main()
