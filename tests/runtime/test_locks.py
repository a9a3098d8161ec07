"""Locks for work that must run once at a time (issue #5, item 5), on the real servers.

A database lock lives on the holder's connection: when a stalled holder's connection is
cut, the lock goes, and so does the holder's ability to write. A Redis lock's fencing
token refuses a stale holder's write (tests/runtime/cache/test_rwlock.py shows the token
check; here the lock as services use it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from support.runtime_service import create_database_engine

from microforge.runtime.locks import LockTimeout, database_lock, fenced_get, fenced_set, redis_lock

metadata = sa.MetaData()
runs = sa.Table("lock_runs", metadata, sa.Column("holder", sa.String(20), nullable=False))


@pytest.fixture
async def engine(engine_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on each database kind (`engine_url` is tests/runtime/conftest.py's)."""
    engine = await create_database_engine(engine_url, metadata)
    yield engine
    await engine.dispose()


async def holders(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(runs.c.holder))).scalars())


async def test_one_holder_at_a_time(engine: AsyncEngine) -> None:
    name = f"nightly-{uuid.uuid4().hex}"
    async with database_lock(engine, name):
        with pytest.raises(LockTimeout):
            async with database_lock(engine, name, timeout=0.3):
                pass
    async with database_lock(engine, name, timeout=1) as conn:
        await conn.execute(runs.insert().values(holder="second"))
        await conn.commit()
    assert await holders(engine) == ["second"]


async def _backend_id(conn: AsyncConnection) -> int:
    query = (
        "SELECT pg_backend_pid()" if conn.dialect.name == "postgresql" else "SELECT CONNECTION_ID()"
    )
    value = (await conn.execute(sa.text(query))).scalar_one()
    await conn.commit()
    return int(value)


@pytest.mark.parametrize("engine_url", ["postgres", "mariadb"], indirect=True)
async def test_a_stale_holder_cut_off_cannot_write(engine: AsyncEngine) -> None:
    name = f"billing-{uuid.uuid4().hex}"
    kill = "SELECT pg_terminate_backend(:id)" if engine.dialect.name == "postgresql" else "KILL :id"
    async with database_lock(engine, name) as stale:
        stalled_id = await _backend_id(stale)
        # The holder stalls; an operator (or a failover) cuts its connection.
        async with engine.connect() as admin:
            await admin.execute(sa.text(kill), {"id": stalled_id})
            await admin.commit()
        # The lock went with the connection: the next holder gets it and does the work.
        async with database_lock(engine, name, timeout=5) as fresh:
            await fresh.execute(runs.insert().values(holder="successor"))
            await fresh.commit()
        # The stale holder wakes up and tries to write: refused.
        with pytest.raises(sa.exc.DBAPIError):
            await stale.execute(runs.insert().values(holder="stale"))
    assert await holders(engine) == ["successor"]


async def test_redis_lock_fences_a_holder_whose_lease_ran_out(redis_url: str) -> None:
    client = redis.asyncio.from_url(redis_url)
    name, key = f"export-{uuid.uuid4().hex}", f"mf-test:{uuid.uuid4().hex}:report"
    try:
        stale_hold = redis_lock(client, name, lease=0.2)
        stale_token = await stale_hold.__aenter__()
        await asyncio.sleep(0.4)  # the holder stalls past its lease (a GC pause, say)
        async with redis_lock(client, name, timeout=2) as token:
            assert token > stale_token
            assert await fenced_set(client, key, b"from the successor", token)
        assert not await fenced_set(client, key, b"from the stale holder", stale_token)
        assert await fenced_get(client, key) == b"from the successor"
        await stale_hold.__aexit__(None, None, None)
    finally:
        await client.aclose()
