"""Locks for work that must run once at a time across instances of a service.

Two kinds, for two places the state can live:

- `database_lock(engine, name)`: the service's own database holds the lock, on the
  connection it yields (PostgreSQL `pg_advisory_lock`, MariaDB `GET_LOCK`). Do the
  guarded writes on that connection: if the holder stalls and its connection is cut
  (a failover, `pg_terminate_backend`, a network partition), the database drops the lock
  *and* the connection, so the stale holder's later writes fail instead of landing after
  the next holder's. SQLite has no such lock; there the lock is the process's own,
  which is enough for the one process that `microforge up` runs per service.
- `redis_lock(client, name)`: a lock with a lease, for work that touches no database
  or several. It yields a fencing token that grows with every acquisition; give it to
  what you write (`fenced_set`, or a `WHERE fence < :token` of your own) so a holder
  whose lease ran out while it stalled cannot overwrite its successor.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import redis.asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .cache.rwlock import LockTimeout, RedisReadWriteLock, fenced_get, fenced_set

__all__ = ["LockTimeout", "database_lock", "fenced_get", "fenced_set", "redis_lock"]

_FIRST_POLL = 0.01
_MAX_POLL = 0.2
_local: dict[tuple[str, str], asyncio.Lock] = {}  # SQLite: (database, name) -> lock


def redis_lock(
    client: redis.asyncio.Redis, name: str, *, lease: float = 5.0, timeout: float = 5.0
) -> AbstractAsyncContextManager[int]:
    """Hold `name` alone for at most `lease` seconds; yields the fencing token."""
    return RedisReadWriteLock(client, f"mf:lock:{name}", lease).write(timeout)


@asynccontextmanager
async def database_lock(
    engine: AsyncEngine, name: str, *, timeout: float = 5.0
) -> AsyncIterator[AsyncConnection]:
    """Hold `name` alone until the block ends; yields the connection that holds it.

    `LockTimeout` if another holder keeps it longer than `timeout` seconds.
    """
    backend = engine.dialect.name
    async with engine.connect() as conn:
        if backend == "postgresql":
            key = _key64(name)
            await _poll(conn, "SELECT pg_try_advisory_lock(:key)", {"key": key}, name, timeout)
            try:
                yield conn
            finally:
                await _release(conn, "SELECT pg_advisory_unlock(:key)", {"key": key})
        elif backend in ("mysql", "mariadb"):
            lock_name = f"mf:{_key64(name):x}"  # GET_LOCK names are at most 64 characters
            wait = max(0, math.ceil(timeout))
            result = await conn.execute(
                text("SELECT GET_LOCK(:name, :wait)"), {"name": lock_name, "wait": wait}
            )
            await conn.commit()
            if result.scalar() != 1:
                raise LockTimeout(f"database lock {name!r} not acquired in {timeout}s")
            try:
                yield conn
            finally:
                await _release(conn, "SELECT RELEASE_LOCK(:name)", {"name": lock_name})
        else:
            lock = _local.setdefault((str(engine.url), name), asyncio.Lock())
            try:
                await asyncio.wait_for(lock.acquire(), timeout)
            except TimeoutError:
                raise LockTimeout(f"lock {name!r} not acquired in {timeout}s") from None
            try:
                yield conn
            finally:
                lock.release()


async def _poll(
    conn: AsyncConnection, statement: str, params: dict[str, int], name: str, timeout: float
) -> None:
    """Try until acquired; jittered backoff so waiting instances do not poll in step."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = _FIRST_POLL
    while True:
        acquired = (await conn.execute(text(statement), params)).scalar()
        await conn.commit()  # the lock is the session's; leave no transaction open
        if acquired:
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise LockTimeout(f"database lock {name!r} not acquired in {timeout}s")
        await asyncio.sleep(min(remaining, random.uniform(delay / 2, delay)))
        delay = min(2 * delay, _MAX_POLL)


async def _release(conn: AsyncConnection, statement: str, params: dict[str, object]) -> None:
    if conn.closed or conn.invalidated:
        return  # the connection is gone, and the database let the lock go with it
    await conn.rollback()  # whatever the block left open
    await conn.execute(text(statement), params)
    await conn.commit()


def _key64(name: str) -> int:
    """A stable signed 64-bit key for `name` (advisory locks take a bigint)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
