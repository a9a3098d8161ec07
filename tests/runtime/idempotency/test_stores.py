"""The Idempotency-Key store contract, on the real servers (issue #5, items 1-3).

One suite for every store: the SQL store on SQLite, PostgreSQL and MariaDB, and the Redis
store. Leases and retention are short (a fraction of a second) and the tests that wait for
them poll until a deadline rather than sleeping a guessed time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from support.runtime_service import create_database_engine

from microforge.runtime.cache.backends import redis_client
from microforge.runtime.db import sqlite_url
from microforge.runtime.idempotency.redis_store import RedisIdempotencyStore
from microforge.runtime.idempotency.store import (
    TABLE,
    Claim,
    IdempotencyStore,
    SqlIdempotencyStore,
    StoredResponse,
)
from microforge.runtime.types import utcnow

SCOPE = "user:42|tenant:acme"
FP_A = "a" * 64
FP_B = "b" * 64
LEASE = 30.0  # long enough never to end during a test that does not wait for it
RETENTION = 60.0
SHORT_LEASE = 0.2
SHORT_RETENTION = 0.3
DEADLINE = 5.0  # seconds a poll may take before the test fails

CREATED = StoredResponse(
    201,
    [
        ("content-type", "application/json"),
        ("location", "/widgets/1"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),  # repeated names and their order survive
    ],
    b'{"id": 1}',
)


@pytest.fixture(params=["sqlite", "postgres", "mariadb", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind, or the shared Redis (a sync fixture, so that it may
    ask for the async database fixtures by name)."""
    kind: str = request.param
    if kind == "sqlite":
        return sqlite_url(tmp_path / "idempotency.db")
    url: str = request.getfixturevalue(f"{kind}_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[IdempotencyStore]:
    """Each store: the SQL store on its own database, the Redis store as a service of its own."""
    if store_url.startswith("redis"):
        redis_store = RedisIdempotencyStore(store_url, f"test-{uuid.uuid4().hex}")
        try:
            yield redis_store
        finally:
            await redis_store.aclose()
            # The server is shared: leave none of this test's keys behind.
            client, _ = redis_client(store_url)
            async for name in client.scan_iter(match=redis_store.prefix + "*"):
                await client.unlink(name)
            await client.aclose()
        return
    engine = await create_database_engine(store_url, TABLE.metadata)
    try:
        yield SqlIdempotencyStore(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def engine(engine_url: str) -> AsyncIterator[AsyncEngine]:
    """For the SQL store's own behaviour (`engine_url` is tests/runtime/conftest.py's)."""
    engine = await create_database_engine(engine_url, TABLE.metadata)
    try:
        yield engine
    finally:
        await engine.dispose()


async def claim(
    store: IdempotencyStore,
    fingerprint: str = FP_A,
    *,
    key: str = "key-1",
    scope: str = SCOPE,
    lease: float = LEASE,
    retention: float = RETENTION,
) -> Claim:
    return await store.claim(scope, key, fingerprint, lease=lease, retention=retention)


async def poll(
    attempt: Callable[[], Awaitable[Claim]], until: Callable[[Claim], bool]
) -> tuple[Claim, list[Claim]]:
    """Run ``attempt`` until ``until`` holds; the claim that did, and the ones before it."""
    deadline = asyncio.get_running_loop().time() + DEADLINE
    before: list[Claim] = []
    while True:
        result = await attempt()
        if until(result):
            return result, before
        before.append(result)
        assert asyncio.get_running_loop().time() < deadline, f"still {result} after {DEADLINE}s"
        await asyncio.sleep(0.02)


async def test_first_claim_acquires_and_a_second_finds_it_running(
    store: IdempotencyStore,
) -> None:
    start = utcnow()
    first = await claim(store)
    end = utcnow()
    assert first.state == "acquired"
    assert first.token
    assert first.fingerprint == FP_A
    assert start + dt.timedelta(seconds=RETENTION) <= first.expires_at
    assert first.expires_at <= end + dt.timedelta(seconds=RETENTION)

    second = await claim(store, FP_B)
    assert second.state == "running"
    assert second.token == ""
    assert second.response is None
    assert second.fingerprint == FP_A  # the first request's, not the asker's
    assert second.expires_at == first.expires_at
    assert second.locked_until is not None
    assert start + dt.timedelta(seconds=LEASE) <= second.locked_until
    assert second.locked_until <= end + dt.timedelta(seconds=LEASE)


@pytest.mark.parametrize(
    "response",
    [
        CREATED,
        StoredResponse(
            200, [("content-type", "application/octet-stream")], bytes(range(256)) * 300
        ),
        StoredResponse(204, [], b""),
        StoredResponse(
            422, [("content-type", "application/problem+json")], b"\xff\xfe\x00 not utf-8"
        ),
    ],
    ids=["json", "binary-75KiB", "empty", "not-utf8"],
)
async def test_a_completed_key_replays_the_exact_response(
    store: IdempotencyStore, response: StoredResponse
) -> None:
    first = await claim(store)
    assert await store.complete(SCOPE, "key-1", first.token, response)
    for fingerprint in (FP_A, FP_B):
        again = await claim(store, fingerprint)
        assert again.state == "done"
        assert again.fingerprint == FP_A
        assert again.expires_at == first.expires_at
        assert again.locked_until is None
        assert again.response == response
        assert again.token == ""


async def test_scopes_and_keys_do_not_collide(store: IdempotencyStore) -> None:
    odd_key = " !\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`{|}~" + "x" * 200
    pairs = [
        (SCOPE, "key-1"),
        ("user:43|tenant:acme", "key-1"),  # another caller's key of the same name
        ("a:", "b"),  # joined naively, these two would be the same
        ("a", ":b"),
        (SCOPE, odd_key),
        (SCOPE, odd_key[:-1]),
    ]
    claims = [await claim(store, key=key, scope=scope) for scope, key in pairs]
    assert [c.state for c in claims] == ["acquired"] * len(pairs)
    assert len({c.token for c in claims}) == len(pairs)
    # Each completes on its own.
    for (scope, key), held in zip(pairs, claims, strict=True):
        body = f"{scope}/{key}".encode()
        assert await store.complete(scope, key, held.token, StoredResponse(200, [], body))
    for scope, key in pairs:
        found = await claim(store, key=key, scope=scope)
        assert found.response is not None
        assert found.response.body == f"{scope}/{key}".encode()


async def test_release_frees_the_key(store: IdempotencyStore) -> None:
    held = await claim(store)
    await store.release(SCOPE, "key-1", held.token)
    again = await claim(store, FP_B)  # any request may now use the key
    assert again.state == "acquired"
    assert again.fingerprint == FP_B


async def test_a_wrong_token_neither_releases_nor_completes(store: IdempotencyStore) -> None:
    held = await claim(store)
    wrong = "0" * 32
    await store.release(SCOPE, "key-1", wrong)
    assert not await store.complete(SCOPE, "key-1", wrong, CREATED)
    found = await claim(store, FP_B)
    assert found.state == "running"
    assert found.fingerprint == FP_A
    # Nor does a token for a key that does not exist.
    assert not await store.complete(SCOPE, "no-such-key", held.token, CREATED)
    await store.release(SCOPE, "no-such-key", held.token)
    # The holder still can.
    assert await store.complete(SCOPE, "key-1", held.token, CREATED)
    assert (await claim(store)).response == CREATED


async def test_an_abandoned_lease_is_taken_over_and_fences_the_old_holder(
    store: IdempotencyStore,
) -> None:
    stale = await claim(store, lease=SHORT_LEASE)
    lease_end = (await claim(store, FP_B)).locked_until  # another request never takes over
    assert lease_end is not None
    # A retry of the same request polls until the holder's lease has ended.
    fresh, before = await poll(
        lambda: claim(store, lease=LEASE), lambda found: found.state == "acquired"
    )
    assert utcnow() >= lease_end  # not before
    assert all(found.state == "running" for found in before)
    assert all(found.locked_until == lease_end for found in before)
    assert fresh.fingerprint == FP_A
    assert fresh.token != stale.token
    # The old holder wakes up: it can neither store its response nor free the key.
    assert not await store.complete(SCOPE, "key-1", stale.token, CREATED)
    await store.release(SCOPE, "key-1", stale.token)
    running = await claim(store)
    assert running.state == "running"
    assert running.locked_until is not None
    assert running.locked_until > utcnow() + dt.timedelta(seconds=LEASE / 2)
    # The new holder can.
    replay = StoredResponse(201, [], b"from the retry")
    assert await store.complete(SCOPE, "key-1", fresh.token, replay)
    assert (await claim(store)).response == replay


async def test_an_abandoned_lease_is_not_taken_over_by_another_request(
    store: IdempotencyStore,
) -> None:
    await claim(store, lease=SHORT_LEASE)
    first_seen = await claim(store, FP_B)
    assert first_seen.locked_until is not None
    lease_end = first_seen.locked_until
    # Wait (polling) until the lease has ended by the clock both stores use.
    await poll(claim_of_b(store), lambda _: utcnow() > lease_end + dt.timedelta(seconds=0.05))
    found = await claim(store, FP_B)
    assert found.state == "running"
    assert found.fingerprint == FP_A
    assert found.locked_until == lease_end


def claim_of_b(store: IdempotencyStore) -> Callable[[], Awaitable[Claim]]:
    async def attempt() -> Claim:
        found = await claim(store, FP_B)
        assert found.state == "running"
        assert found.fingerprint == FP_A
        return found

    return attempt


async def test_an_expired_key_is_claimable_again_by_any_request(
    store: IdempotencyStore,
) -> None:
    held = await claim(store, lease=SHORT_LEASE / 2, retention=SHORT_RETENTION)
    assert await store.complete(SCOPE, "key-1", held.token, CREATED)
    fresh, before = await poll(lambda: claim(store, FP_B), lambda found: found.state == "acquired")
    assert all(found.state == "done" for found in before)
    assert all(found.response == CREATED for found in before)
    assert utcnow() >= held.expires_at
    assert fresh.fingerprint == FP_B
    # It is a new key: it runs, then holds the new response.
    again = await claim(store, FP_A)
    assert again.state == "running"
    assert again.fingerprint == FP_B
    assert await store.complete(SCOPE, "key-1", fresh.token, StoredResponse(200, [], b"new"))
    assert (await claim(store)).response == StoredResponse(200, [], b"new")


async def test_only_one_of_many_concurrent_claims_acquires(store: IdempotencyStore) -> None:
    claims = await asyncio.gather(*(claim(store) for _ in range(50)))
    states = [found.state for found in claims]
    assert states.count("acquired") == 1
    assert states.count("running") == 49
    assert all(found.fingerprint == FP_A for found in claims)


async def test_only_one_of_many_concurrent_retries_takes_over(store: IdempotencyStore) -> None:
    await claim(store, lease=SHORT_LEASE)
    lease_end = (await claim(store)).locked_until
    assert lease_end is not None
    await poll(claim_of_b(store), lambda _: utcnow() > lease_end)
    claims = await asyncio.gather(*(claim(store) for _ in range(20)))
    states = [found.state for found in claims]
    assert states.count("acquired") == 1
    assert states.count("running") == 19


async def test_purge(store: IdempotencyStore) -> None:
    expiring = await claim(store, key="short", retention=SHORT_RETENTION)
    kept = await claim(store, key="long")
    await store.complete(SCOPE, "long", kept.token, CREATED)
    await poll(lambda: claim(store, key="long"), lambda _: utcnow() > expiring.expires_at)
    purged = await store.purge()
    # The SQL store deletes the expired row; Redis dropped it by itself.
    assert purged == (0 if isinstance(store, RedisIdempotencyStore) else 1)
    assert await store.purge() == 0
    assert (await claim(store, key="long")).response == CREATED
    assert (await claim(store, FP_B, key="short")).state == "acquired"


async def test_purge_deletes_only_expired_rows(engine: AsyncEngine) -> None:
    store = SqlIdempotencyStore(engine)
    short = [
        await claim(store, key=f"short-{index}", retention=SHORT_RETENTION) for index in range(3)
    ]
    await claim(store, key="long")
    await poll(lambda: claim(store, key="long"), lambda _: utcnow() > short[-1].expires_at)
    assert await store.purge() == 3
    async with engine.connect() as conn:
        keys = (await conn.execute(select(TABLE.c.idempotency_key))).scalars().all()
        assert keys == ["long"]
        assert (await conn.execute(select(func.count()).select_from(TABLE))).scalar() == 1


class Boom(Exception):
    pass


async def test_sql_completion_rolls_back_with_the_change(engine: AsyncEngine) -> None:
    store = SqlIdempotencyStore(engine)
    assert store.transactional
    held = await claim(store)

    async def change_that_fails() -> None:
        async with engine.begin() as conn:
            assert await store.complete(SCOPE, "key-1", held.token, CREATED, conn=conn)
            raise Boom  # after the change: its transaction rolls back

    with pytest.raises(Boom):
        await change_that_fails()
    found = await claim(store, FP_B)
    assert found.state == "running"
    assert found.fingerprint == FP_A
    assert found.response is None
    # The holder still holds the key, and completes it in a transaction that commits.
    async with engine.begin() as conn:
        assert await store.complete(SCOPE, "key-1", held.token, CREATED, conn=conn)
    assert (await claim(store)).response == CREATED


async def test_redis_completion_is_not_transactional(redis_url: str) -> None:
    store = RedisIdempotencyStore(redis_url, f"test-{uuid.uuid4().hex}")
    client, _ = redis_client(redis_url)  # to look behind the store's back
    try:
        assert not store.transactional
        held = await claim(store, retention=5)
        assert await store.complete(SCOPE, "key-1", held.token, CREATED)
        ttl = await client.pttl(store.redis_key(SCOPE, "key-1"))
        assert 0 < ttl <= 5000  # retention is the hash's own expiry
        await store.release(SCOPE, "key-1", held.token)
        assert not await client.exists(store.redis_key(SCOPE, "key-1"))
    finally:
        await store.aclose()
        await client.aclose()


async def test_redis_claim_sent_again_after_a_lost_reply_still_holds_the_key(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py sends a command again when the connection broke before the reply came: the
    # second run of the same claim (same token) must not report the key as someone else's.
    store = RedisIdempotencyStore(redis_url, f"test-{uuid.uuid4().hex}")
    monkeypatch.setattr(
        "microforge.runtime.idempotency.redis_store.secrets.token_hex", lambda _: "f" * 32
    )
    try:
        first = await claim(store)
        again = await claim(store)
        assert (first.state, again.state) == ("acquired", "acquired")
        assert again.token == first.token
        await store.release(SCOPE, "key-1", first.token)
    finally:
        await store.aclose()
