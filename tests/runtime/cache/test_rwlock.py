"""The Redis read-write lock: sharing, exclusion, writer preference, leases, fencing."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio
from support.databases import free_port

from microforge.runtime.cache.backends import CacheUnavailable, redis_client
from microforge.runtime.cache.rwlock import (
    LockTimeout,
    RedisReadWriteLock,
    fenced_get,
    fenced_set,
)

SHORT = 0.1  # a timeout for attempts that are expected to fail


@pytest.fixture
def name() -> str:
    return f"mf-test:{uuid.uuid4().hex}:lock"


async def test_readers_share(redis_connection: redis.asyncio.Redis, name: str) -> None:
    lock = RedisReadWriteLock(redis_connection, name)
    # The last one is how another process would see the same lock.
    async with (
        lock.read() as first,
        lock.read(timeout=SHORT) as second,
        RedisReadWriteLock(redis_connection, name).read(timeout=SHORT) as third,
    ):
        assert first < second < third


async def test_a_writer_excludes_readers_and_writers(
    redis_connection: redis.asyncio.Redis, name: str
) -> None:
    lock = RedisReadWriteLock(redis_connection, name)
    async with lock.write() as token:
        with pytest.raises(LockTimeout):
            async with lock.read(timeout=SHORT):
                pass
        with pytest.raises(LockTimeout):
            async with lock.write(timeout=SHORT):
                pass
    async with lock.read(timeout=SHORT) as after:
        assert after > token


async def test_readers_exclude_a_writer_until_they_leave(
    redis_connection: redis.asyncio.Redis, name: str
) -> None:
    lock = RedisReadWriteLock(redis_connection, name)
    async with lock.read():
        with pytest.raises(LockTimeout):
            async with lock.write(timeout=SHORT):
                pass
        # The writer gave up, so its intent went with it: readers are welcome again.
        async with lock.read(timeout=SHORT):
            pass
    async with lock.write(timeout=SHORT):
        pass


async def test_a_waiting_writer_blocks_new_readers(
    redis_connection: redis.asyncio.Redis, name: str
) -> None:
    lock = RedisReadWriteLock(redis_connection, name)
    events: list[str] = []

    async def writer() -> None:
        async with lock.write(timeout=5):
            events.append("writer in")

    async with lock.read():
        task = asyncio.create_task(writer())
        # Until the writer has registered, new readers still get in; then they wait.
        deadline = time.monotonic() + 5
        while True:
            assert time.monotonic() < deadline, "new readers were never held back"
            try:
                async with lock.read(timeout=0.02):
                    pass
            except LockTimeout:
                break
        assert events == []
        events.append("reader out")
    await asyncio.wait_for(task, timeout=5)
    assert events == ["reader out", "writer in"]
    async with lock.read(timeout=SHORT):
        pass


async def test_a_crashed_waiting_writer_stops_blocking_readers_after_a_lease(
    redis_connection: redis.asyncio.Redis, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lease = 0.3
    lock = RedisReadWriteLock(redis_connection, name, lease=lease)
    dying = RedisReadWriteLock(redis_connection, name, lease=lease)

    async def no_cleanup(holder: str, *, writer: bool) -> bool:
        return True  # the process dies before it can withdraw its intent

    monkeypatch.setattr(dying, "_release", no_cleanup)

    async def wait_to_write() -> None:
        async with dying.write(timeout=5):
            pass

    async with lock.read():
        waiter = asyncio.create_task(wait_to_write())
        deadline = time.monotonic() + 5
        while True:  # until the waiter's intent holds readers back
            assert time.monotonic() < deadline, "new readers were never held back"
            try:
                async with lock.read(timeout=0.02):
                    pass
            except LockTimeout:
                break
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        died = time.monotonic()
        async with lock.read(timeout=5):
            assert time.monotonic() - died > lease / 2


async def test_a_crashed_writer_is_freed_by_its_lease(
    redis_connection: redis.asyncio.Redis, name: str
) -> None:
    lock = RedisReadWriteLock(redis_connection, name, lease=0.3)
    crashed = lock.write()
    stale = await crashed.__aenter__()  # and never leaves, as if the process died
    with pytest.raises(LockTimeout):
        async with lock.write(timeout=SHORT):
            pass
    async with lock.write(timeout=5) as token:
        assert token > stale
        # The stale holder finally leaves: it must not release the new holder's hold.
        await crashed.__aexit__(None, None, None)
        with pytest.raises(LockTimeout):
            async with lock.read(timeout=SHORT):
                pass


async def test_a_crashed_reader_is_freed_by_its_lease(
    redis_connection: redis.asyncio.Redis, name: str
) -> None:
    lock = RedisReadWriteLock(redis_connection, name, lease=0.3)
    crashed = lock.read()
    await crashed.__aenter__()
    with pytest.raises(LockTimeout):
        async with lock.write(timeout=SHORT):
            pass
    async with lock.write(timeout=5):
        await crashed.__aexit__(None, None, None)
        with pytest.raises(LockTimeout):
            async with lock.write(timeout=SHORT):
                pass


async def test_timeouts_raise_lock_timeout_on_time(
    redis_connection: redis.asyncio.Redis, name: str
) -> None:
    lock = RedisReadWriteLock(redis_connection, name)
    async with lock.write():
        for timeout in (0.0, 0.3):
            started = time.monotonic()
            with pytest.raises(LockTimeout, match=name):
                async with lock.write(timeout=timeout):
                    pass
            assert timeout <= time.monotonic() - started < timeout + 0.2
    assert issubclass(LockTimeout, TimeoutError)


async def test_an_exception_in_the_body_releases(
    redis_connection: redis.asyncio.Redis, name: str
) -> None:
    lock = RedisReadWriteLock(redis_connection, name)
    with pytest.raises(ZeroDivisionError):
        async with lock.write():
            _ = 1 / 0
    async with lock.read(timeout=SHORT):
        pass


async def test_fencing_rejects_a_stale_holder(
    redis_connection: redis.asyncio.Redis, name: str
) -> None:
    lock = RedisReadWriteLock(redis_connection, name, lease=0.3)
    key = f"{name}:guarded"
    stalled = lock.write()
    stale_token = await stalled.__aenter__()
    assert await fenced_set(redis_connection, key, b"from the first holder", stale_token)

    # The first holder stalls past its lease; another writer takes over.
    async with lock.write(timeout=5) as token:
        assert token > stale_token
        assert await fenced_set(redis_connection, key, b"from the second holder", token)
        # The first holder wakes up and writes: refused, nothing changes.
        assert not await fenced_set(redis_connection, key, b"stale", stale_token)
        assert await fenced_get(redis_connection, key) == b"from the second holder"
        # The current holder may write again with its token.
        assert await fenced_set(redis_connection, key, b"second again", token)
    await stalled.__aexit__(None, None, None)
    assert await fenced_get(redis_connection, key) == b"second again"
    assert await fenced_get(redis_connection, f"{name}:never-written") is None


async def test_an_unreachable_server_is_unavailable(name: str) -> None:
    client, _ = redis_client(f"redis://127.0.0.1:{free_port()}/0?timeout=0.2")
    try:
        with pytest.raises(CacheUnavailable):
            async with RedisReadWriteLock(client, name).write(timeout=1):
                pass
    finally:
        await client.aclose()


def test_the_lease_must_be_positive() -> None:
    client = redis.asyncio.Redis()
    for lease in (0, -1, float("inf")):
        with pytest.raises(ValueError, match="lease"):
            RedisReadWriteLock(client, "x", lease=lease)
