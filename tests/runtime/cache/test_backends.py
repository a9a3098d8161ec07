"""The backend contract: the same tests on memory, Redis and memcached.

The servers come from ``scripts/test`` (``redis_url`` / ``memcached_url`` skip locally,
and fail in CI, without them). They are shared, so every key starts with a per-test
prefix and nothing is ever flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiomcache
import pytest
from support.databases import free_port

from microforge.runtime.cache.backends import (
    Backend,
    CacheUnavailable,
    MemcachedBackend,
    MemoryBackend,
    RedisBackend,
    open_backend,
    redis_client,
)

KINDS = ("memory", "redis", "memcached")
MiB = 1 << 20


@pytest.fixture(params=KINDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "memory":
        return "memory://"
    url: str = request.getfixturevalue(f"{kind}_url")
    return url


@pytest.fixture
async def backend(backend_url: str) -> AsyncIterator[Backend]:
    backend = open_backend(backend_url, capacity=1_000)
    try:
        yield backend
    finally:
        await backend.aclose()


@pytest.fixture
def prefix() -> str:
    return f"mf-test:{uuid.uuid4().hex}:"


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition still false after {timeout}s")
        await asyncio.sleep(0.02)


def with_options(url: str, options: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{options}"


# --- reads and writes ----------------------------------------------------------------


async def test_get_many_returns_values_in_order_with_misses(backend: Backend, prefix: str) -> None:
    await backend.set(prefix + "a", b"alpha", 60)
    await backend.set(prefix + "c", b"gamma", 60)
    keys = [prefix + "a", prefix + "b", prefix + "c", prefix + "a"]
    assert await backend.get_many(keys) == [b"alpha", None, b"gamma", b"alpha"]
    assert await backend.get_many([]) == []


async def test_get_many_of_many_keys(backend: Backend, prefix: str) -> None:
    keys = [f"{prefix}{i:0>150}" for i in range(200)]
    for key in keys[::2]:
        await backend.set(key, key.encode(), 60)
    expected = [key.encode() if i % 2 == 0 else None for i, key in enumerate(keys)]
    assert await backend.get_many(keys) == expected


async def test_set_replaces_the_value(backend: Backend, prefix: str) -> None:
    await backend.set(prefix + "k", b"first", 60)
    await backend.set(prefix + "k", b"second", 60)
    assert await backend.get_many([prefix + "k"]) == [b"second"]


async def test_entries_expire_after_their_ttl(backend: Backend, prefix: str) -> None:
    await backend.set(prefix + "short", b"v", 0.2)
    await backend.set(prefix + "long", b"v", 60)
    assert await backend.get_many([prefix + "short"]) == [b"v"]

    async def expired() -> bool:
        return await backend.get_many([prefix + "short"]) == [None]

    # memcached rounds up to whole seconds and its clock ticks once a second.
    await wait_for(expired, timeout=5.0)
    assert await backend.get_many([prefix + "long"]) == [b"v"]


async def test_ttl_beyond_thirty_days_keeps_the_entry(backend: Backend, prefix: str) -> None:
    # memcached would read 40 days in seconds as a unix time in 1970: already expired.
    await backend.set(prefix + "k", b"v", 40 * 24 * 3600)
    assert await backend.get_many([prefix + "k"]) == [b"v"]


async def test_delete(backend: Backend, prefix: str) -> None:
    for name in "abc":
        await backend.set(prefix + name, name.encode(), 60)
    await backend.delete(prefix + "a", prefix + "b", prefix + "missing", prefix + "a")
    await backend.delete()
    keys = [prefix + name for name in "abc"]
    assert await backend.get_many(keys) == [None, None, b"c"]


async def test_values_of_one_mebibyte(backend: Backend, prefix: str) -> None:
    value = os.urandom(MiB)
    await backend.set(prefix + "big", value, 60)
    assert await backend.get_many([prefix + "big", prefix + "none"]) == [value, None]


async def test_binary_values(backend: Backend, prefix: str) -> None:
    # Every byte value, plus what text protocols use as terminators.
    value = bytes(range(256)) * 4 + b"\r\nEND\r\n\x00VALUE x 0 1\r\n"
    await backend.set(prefix + "bin", value, 60)
    await backend.set(prefix + "empty", b"", 60)
    assert await backend.get_many([prefix + "bin", prefix + "empty"]) == [value, b""]


# --- counters -------------------------------------------------------------------------


async def test_counters_start_at_a_random_value_and_count_up(backend: Backend, prefix: str) -> None:
    first = await backend.incr(prefix + "one")
    other = await backend.incr(prefix + "two")
    assert first != other  # random starts: equal with probability 2**-62
    assert 1 < first < 2**63
    assert 1 < other < 2**63
    assert [await backend.incr(prefix + "one") for _ in range(3)] == [
        first + 1,
        first + 2,
        first + 3,
    ]
    # Counters read back as ASCII decimal, next to ordinary entries.
    await backend.set(prefix + "entry", b"x", 60)
    values = await backend.get_many([prefix + "one", prefix + "entry", prefix + "two"])
    assert values == [b"%d" % (first + 3), b"x", b"%d" % other]


async def test_concurrent_increments_are_distinct_and_gapless(
    backend: Backend, prefix: str
) -> None:
    start = await backend.incr(prefix + "n")
    values = await asyncio.gather(*(backend.incr(prefix + "n") for _ in range(50)))
    assert sorted(values) == list(range(start + 1, start + 51))
    assert await backend.get_many([prefix + "n"]) == [b"%d" % (start + 50)]


async def test_a_lost_counter_does_not_repeat_old_values(backend: Backend, prefix: str) -> None:
    before = await backend.incr(prefix + "n")
    await backend.delete(prefix + "n")
    after = await backend.incr(prefix + "n")
    assert after != before + 1  # restarted at a new random value


async def test_set_and_incr_on_one_key_replace_each_other(backend: Backend, prefix: str) -> None:
    await backend.incr(prefix + "k")
    await backend.set(prefix + "k", b"entry", 60)
    assert await backend.get_many([prefix + "k"]) == [b"entry"]
    await backend.delete(prefix + "k")
    value = await backend.incr(prefix + "k")
    assert await backend.get_many([prefix + "k"]) == [b"%d" % value]


# --- arguments ------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "has space", "tab\there", "ünïcode", "x" * 251])
async def test_bad_keys_are_value_errors(backend: Backend, key: str) -> None:
    with pytest.raises(ValueError, match="cache key"):
        await backend.get_many([key])
    with pytest.raises(ValueError, match="cache key"):
        await backend.set(key, b"v", 60)
    with pytest.raises(ValueError, match="cache key"):
        await backend.incr(key)


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan")])
async def test_bad_ttls_are_value_errors(backend: Backend, prefix: str, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await backend.set(prefix + "k", b"v", ttl)


def test_open_backend_names_the_accepted_schemes() -> None:
    for url in ["http://localhost", "postgresql://u:secret@h/db", "localhost:6379"]:
        with pytest.raises(ValueError, match="memcached://") as raised:
            open_backend(url)
        assert "secret" not in str(raised.value)


def test_open_backend_picks_the_kind() -> None:
    assert open_backend("memory://").kind == "memory"
    assert open_backend("redis://127.0.0.1:1/0").kind == "redis"
    assert open_backend("unix:///tmp/none.sock").kind == "redis"
    assert open_backend("memcached://127.0.0.1:1").kind == "memcached"
    assert not open_backend("memory://").shared
    assert open_backend("redis://127.0.0.1:1/0?timeout=0.2").shared


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:1/0?timeout=0", "timeout"),
        ("redis://127.0.0.1:1/0?timeout=soon", "timeout"),
        ("memcached://127.0.0.1:1?timeout=-1", "timeout"),
        ("memcached://127.0.0.1:1?pool_size=0", "pool_size"),
        ("memcached://127.0.0.1:1?weight=2", "weight"),
        ("memcached://127.0.0.1:1/0", "no path"),
    ],
)
def test_bad_url_options_are_value_errors(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_backend(url)


def test_unknown_memory_policy_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="policy"):
        open_backend("memory://", policy="fifo")


# --- failures -------------------------------------------------------------------------


def remote_url(kind: str, port: int) -> str:
    return f"redis://127.0.0.1:{port}/0" if kind == "redis" else f"memcached://127.0.0.1:{port}"


async def assert_every_call_unavailable(backend: Backend, within: float) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: backend.get_many(["k"]),
        lambda: backend.set("k", b"v", 60),
        lambda: backend.delete("k"),
        lambda: backend.incr("k"),
        backend.ping,
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(CacheUnavailable):
            await call()
        assert time.monotonic() - started < within
    assert backend.stats()["errors"] == len(calls)


@pytest.mark.parametrize("kind", ["redis", "memcached"])
async def test_a_closed_port_is_unavailable(kind: str) -> None:
    backend = open_backend(with_options(remote_url(kind, free_port()), "timeout=0.2"))
    try:
        await assert_every_call_unavailable(backend, within=1.0)
    finally:
        await backend.aclose()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A port that accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("kind", ["redis", "memcached"])
async def test_a_silent_server_times_out(kind: str) -> None:
    async with silent_server() as port:
        backend = open_backend(with_options(remote_url(kind, port), "timeout=0.2"))
        try:
            # Connect and read each get the timeout; nothing is retried on a timeout.
            await assert_every_call_unavailable(backend, within=0.2 * 2 + 0.3)
        finally:
            await backend.aclose()


async def test_cancelled_calls_leave_the_connections_usable(backend_url: str, prefix: str) -> None:
    # One memcached connection, so an interrupted reply would be read by the next call.
    url = with_options(backend_url, "pool_size=1") if "memcached" in backend_url else backend_url
    backend = open_backend(url)
    try:
        big, small = os.urandom(MiB), b"small"
        await backend.set(prefix + "big", big, 60)
        await backend.set(prefix + "small", small, 60)
        for steps in range(40):
            task = asyncio.create_task(backend.get_many([prefix + "big"]))
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                assert await task == [big]
            assert await backend.get_many([prefix + "small"]) == [small]
    finally:
        await backend.aclose()


async def test_redis_recovers_from_a_dropped_idle_connection(redis_url: str, prefix: str) -> None:
    backend = open_backend(redis_url)
    assert isinstance(backend, RedisBackend)
    admin, _ = redis_client(redis_url)
    try:
        await backend.set(prefix + "k", b"v", 60)
        # The backend's own (only) pooled connection, as the server sees it.
        client_id = await backend._redis.client_id()
        assert await admin.client_kill_filter(_id=str(client_id)) == 1
        assert await backend.get_many([prefix + "k"]) == [b"v"]
        assert backend.stats()["errors"] == 0
    finally:
        await backend.aclose()
        await admin.aclose()


# --- per-kind details -----------------------------------------------------------------


async def test_memcached_refuses_values_over_its_item_size(memcached_url: str, prefix: str) -> None:
    backend = open_backend(memcached_url)
    assert isinstance(backend, MemcachedBackend)
    address = memcached_url.removeprefix("memcached://").split("?")[0]
    host, port = address.rsplit(":", 1)
    raw = aiomcache.Client(host, int(port))
    try:
        item_size_max = int((await raw.stats(b"settings"))[b"item_size_max"] or 0)
        await backend.set(prefix + "k", b"small", 60)
        # Too large is not an outage: the value is just not cached, the old one is gone.
        await backend.set(prefix + "k", os.urandom(item_size_max + 1), 60)
        assert await backend.get_many([prefix + "k"]) == [None]
        assert backend.stats() == {"errors": 0, "refused": 1}
    finally:
        await backend.aclose()
        await raw.close()


async def test_memory_backend_stays_bounded_and_keeps_counters(prefix: str) -> None:
    for policy in ("lru", "lfu", "ttl", "tinylfu"):
        backend = MemoryBackend(policy, capacity=50)
        counter = await backend.incr(prefix + "counter")
        for i in range(500):
            await backend.set(f"{prefix}{i}", b"v", 60)
        stats = backend.stats()
        assert stats["size"] <= stats["capacity"] == 50
        assert stats["evictions"] + stats["rejections"] >= 450
        assert stats["counters"] == 1
        assert await backend.get_many([prefix + "counter"]) == [b"%d" % counter]


async def test_memory_backend_expires_on_its_clock(prefix: str) -> None:
    now = [1000.0]
    backend = MemoryBackend("lru", capacity=10, clock=lambda: now[0])
    await backend.set(prefix + "k", b"v", 5)
    now[0] += 4.9
    assert await backend.get_many([prefix + "k"]) == [b"v"]
    now[0] += 0.2
    assert await backend.get_many([prefix + "k"]) == [None]
    assert backend.stats()["expirations"] == 1
