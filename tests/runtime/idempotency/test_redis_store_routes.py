"""The same rules with `store: redis`: keys in a real Redis, the change in the database.

The Redis store completes a key after the database commit (docs/reliability.md states the
weaker guarantee); within that, replays, fingerprints, scoping, freed keys on server
errors and the concurrent race behave as with the database store.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support.runtime_service import create_database_engine

from microforge.runtime.db import sqlite_url
from microforge.runtime.idempotency.policy import IdempotencyPolicy

from .service import count_payments, create_app, metadata
from .test_conformance import assert_problem, assert_replay_of, key

REDIS = IdempotencyPolicy(store="redis", wait=30)
Served = tuple[httpx.AsyncClient, AsyncEngine]


@pytest.fixture
async def served(tmp_path: Path, redis_url: str) -> AsyncIterator[Served]:
    engine = await create_database_engine(sqlite_url(tmp_path / "redis-store.db"), metadata)
    # A service name of its own: keys of earlier runs in the shared Redis never meet.
    app = create_app(engine, REDIS, redis_url=redis_url, service=f"pay-{uuid.uuid4().hex}")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, engine
    await app.state.idempotency.aclose()
    await engine.dispose()


async def test_redis_replays_refuses_other_payloads_and_scopes_keys(
    served: Served,
) -> None:
    client, engine = served
    first = await client.post("/payments", json={"amount": 5}, headers=key("k"))
    again = await client.post("/payments", json={"amount": 5}, headers=key("k"))
    other = await client.post("/payments", json={"amount": 6}, headers=key("k"))
    bobs = await client.post(
        "/payments", json={"amount": 6}, headers={**key("k"), "X-Caller": "bob"}
    )
    assert first.status_code == 201
    assert_replay_of(again, first)
    assert_problem(other, 422, "different request")
    assert bobs.status_code == 201
    assert "idempotent-replayed" not in bobs.headers
    assert await count_payments(engine) == 2


async def test_redis_frees_the_key_after_a_server_error(
    served: Served,
) -> None:
    client, _ = served
    first = await client.post("/payments", json={"amount": 500}, headers=key("k"))
    again = await client.post("/payments", json={"amount": 500}, headers=key("k"))
    assert (first.status_code, again.status_code) == (500, 500)
    assert "idempotent-replayed" not in again.headers


async def test_redis_fifty_concurrent_identical_posts_make_one_row(
    served: Served,
) -> None:
    client, engine = served
    responses = await asyncio.gather(
        *(client.post("/payments", json={"amount": 5}, headers=key("race")) for _ in range(50))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 49
    assert await count_payments(engine) == 1
