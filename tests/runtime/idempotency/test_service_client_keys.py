"""The services' own retrying client and a keyed route understand each other.

RetryingTransport gives every POST an Idempotency-Key; a route that requires one must
accept it, and a retry of a POST whose answer was lost must get the first response back
instead of running twice.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from support.runtime_service import create_database_engine

from microforge.runtime.db import sqlite_url
from microforge.runtime.idempotency.policy import IdempotencyPolicy
from microforge.runtime.retries import RetryingTransport, RetryPolicy

from .service import count_payments, create_app, metadata


class LosesFirstAnswer(httpx.AsyncBaseTransport):
    """The request reaches the service, its answer is lost on the way back (once)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.lost == 0:
            self.lost += 1
            await response.aread()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


async def test_the_client_keys_its_posts_and_a_retry_is_answered_by_the_replay(
    tmp_path: Path,
) -> None:
    engine = await create_database_engine(sqlite_url(tmp_path / "client.db"), metadata)
    app = create_app(engine, IdempotencyPolicy(mode="required"))
    lossy = LosesFirstAnswer(httpx.ASGITransport(app=app))
    transport = RetryingTransport(lossy, RetryPolicy(attempts=3), sleep=_no_wait)
    async with httpx.AsyncClient(transport=transport, base_url="http://payments") as client:
        response = await client.post("/payments", json={"amount": 5})
    assert lossy.lost == 1
    assert response.status_code == 201, response.text  # the key was accepted
    assert response.headers["idempotent-replayed"] == "true"  # the retry got the first answer
    assert await count_payments(engine) == 1
    await engine.dispose()


async def _no_wait(seconds: float) -> None:
    return None
