"""Cross-instance invalidation over Redis pub/sub, against the test Redis server."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio
from support.databases import free_port

from microforge.runtime.cache.backends import CacheUnavailable
from microforge.runtime.cache.bus import InvalidationBus

Message = dict[str, Any]


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition still false after {timeout}s")
        await asyncio.sleep(0.01)


@pytest.fixture
def channel() -> str:
    return f"mf-test:{uuid.uuid4().hex}:invalidate"


@contextlib.asynccontextmanager
async def running_bus(
    url: str, channel: str, **options: float
) -> AsyncIterator[tuple[InvalidationBus, list[Message]]]:
    """A started bus and the list its (synchronous) handler appends to."""
    bus = InvalidationBus(url, channel, **options)
    seen: list[Message] = []
    await bus.start(seen.append)
    try:
        yield bus, seen
    finally:
        await bus.aclose()


async def subscriber_ids(redis_connection: redis.asyncio.Redis, bus: InvalidationBus) -> list[int]:
    """Server-side ids of ``bus``'s subscribed connections."""
    clients = await redis_connection.client_list(_type="pubsub")
    return [int(c["id"]) for c in clients if c["name"] == f"microforge-bus-{bus.origin}"]


async def test_messages_reach_the_other_instance_but_not_their_sender(
    redis_url: str, channel: str
) -> None:
    async with (
        running_bus(redis_url, channel) as (a, seen_by_a),
        running_bus(redis_url, channel) as (b, seen_by_b),
    ):
        assert a.origin != b.origin
        await a.publish({"op": "evict", "entity": "Order", "id": 7})
        await wait_until(lambda: len(seen_by_b) == 1)
        assert seen_by_b == [{"op": "evict", "entity": "Order", "id": 7, "origin": a.origin}]

        # Redis delivers in order on A's connection: once B's later message is there, A
        # has already read (and skipped) its own.
        await b.publish({"op": "clear", "entity": "Order"})
        await wait_until(lambda: len(seen_by_a) == 1)
        assert seen_by_a == [{"op": "clear", "entity": "Order", "origin": b.origin}]
        assert (a.received, b.received) == (1, 1)
        assert len(seen_by_b) == 1


async def test_async_handlers_are_awaited_and_failures_do_not_stop_the_reader(
    redis_url: str, channel: str
) -> None:
    handled: list[Message] = []

    async def handler(message: Message) -> None:
        await asyncio.sleep(0)
        if message["n"] == 1:
            raise RuntimeError("handler bug")
        handled.append(message)

    listener = InvalidationBus(redis_url, channel)
    await listener.start(handler)
    try:
        async with running_bus(redis_url, channel) as (sender, _):
            for n in (1, 2):
                await sender.publish({"n": n})
            await wait_until(lambda: len(handled) == 1)
            assert handled[0]["n"] == 2
            assert listener.received == 2
    finally:
        await listener.aclose()


async def test_messages_that_are_not_json_objects_are_ignored(
    redis_url: str, channel: str, redis_connection: redis.asyncio.Redis
) -> None:
    async with running_bus(redis_url, channel) as (bus, seen):
        for junk in (b"\xff not json", b"[1, 2]", b'"text"'):
            await redis_connection.publish(channel, junk)
        await redis_connection.publish(channel, b'{"op": "evict", "origin": "elsewhere"}')
        await wait_until(lambda: len(seen) == 1)
        assert seen == [{"op": "evict", "origin": "elsewhere"}]
        assert bus.received == 1


async def test_resync_after_the_connection_drops(
    redis_url: str, channel: str, redis_connection: redis.asyncio.Redis
) -> None:
    async with (
        running_bus(redis_url, channel) as (a, _),
        running_bus(redis_url, channel) as (b, seen_by_b),
    ):
        [old_id] = await subscriber_ids(redis_connection, b)
        assert await redis_connection.client_kill_filter(_id=str(old_id)) == 1

        # Messages may have been missed while disconnected: the handler hears so.
        await wait_until(lambda: {"op": "resync"} in seen_by_b)
        assert b.reconnects == 1
        assert b.connected
        assert b.received == 0  # a resync is not a message from another process
        [new_id] = await subscriber_ids(redis_connection, b)
        assert new_id != old_id

        await a.publish({"op": "evict", "id": 1})
        await wait_until(lambda: len(seen_by_b) == 2)
        assert seen_by_b[1]["id"] == 1


class FreezableProxy:
    """A TCP proxy whose open connections can go silent without closing, like a peer
    that vanished from the network."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.frozen: list[asyncio.StreamWriter] = []
        self._pumps: list[asyncio.Task[None]] = []
        self._open: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def freeze(self) -> None:
        """Stop forwarding on every open connection, leaving them open."""
        for pump in self._pumps:
            pump.cancel()
        self._pumps.clear()
        self.frozen.extend(self._open)
        self._open.clear()

    async def close(self) -> None:
        self.freeze()
        for writer in self.frozen:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._open += [writer, up_writer]
        self._pumps += [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()


async def test_a_silent_connection_is_detected_by_ping_and_replaced(
    redis_url: str, channel: str
) -> None:
    target = urlsplit(redis_url)
    proxy = FreezableProxy(target.hostname or "127.0.0.1", target.port or 6379)
    port = await proxy.start()
    proxied_url = f"redis://127.0.0.1:{port}/0?timeout=0.5"
    try:
        async with (
            running_bus(redis_url, channel) as (sender, _),
            running_bus(proxied_url, channel, ping_interval=0.2) as (bus, seen),
        ):
            proxy.freeze()  # no FIN, no RST: reads just never complete
            started = time.monotonic()
            await wait_until(lambda: {"op": "resync"} in seen)
            assert time.monotonic() - started < 2.0  # two ping intervals plus reconnecting
            await sender.publish({"op": "evict", "id": 2})
            await wait_until(lambda: len(seen) == 2)
            assert seen[1]["id"] == 2
            assert bus.connected
    finally:
        await proxy.close()


async def test_an_unreachable_server_is_unavailable(channel: str) -> None:
    bus = InvalidationBus(f"redis://127.0.0.1:{free_port()}/0?timeout=0.2", channel)
    try:
        started = time.monotonic()
        with pytest.raises(CacheUnavailable):
            await bus.start(lambda message: None)
        with pytest.raises(CacheUnavailable):
            await bus.publish({"op": "evict"})
        assert time.monotonic() - started < 1.0
        assert not bus.connected
    finally:
        await bus.aclose()


async def test_aclose_unsubscribes(
    redis_url: str, channel: str, redis_connection: redis.asyncio.Redis
) -> None:
    async with running_bus(redis_url, channel) as (bus, _):
        assert bus.connected
        assert len(await subscriber_ids(redis_connection, bus)) == 1
    assert not bus.connected

    async def gone() -> bool:
        return await subscriber_ids(redis_connection, bus) == []

    deadline = time.monotonic() + 5.0
    while not await gone():
        assert time.monotonic() < deadline, "subscriber connection still open"
        await asyncio.sleep(0.02)
