"""Cross-instance invalidation over Redis pub/sub.

Every process of a service subscribes to one channel, publishes what it changed, and
drops its local copies of what the others changed. Pub/sub only delivers to connected
subscribers, so after a reconnect the handler gets ``{"op": "resync"}``: messages sent
meanwhile are lost and local state must be rebuilt.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .backends import CacheUnavailable, redis_client

log = logging.getLogger("microforge.cache.bus")

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]

FIRST_BACKOFF = 0.05  # seconds before the second reconnect attempt; doubles up to the cap


class InvalidationBus:
    """One per service process: publish changes, hear the other processes' changes."""

    def __init__(
        self,
        url: str,
        channel: str,
        *,
        ping_interval: float = 5.0,
        max_backoff: float = 2.0,
    ) -> None:
        self.origin = uuid.uuid4().hex  # tags this process's messages so it skips them
        self.channel = channel
        self.received = 0  # messages from other origins handed to the handler
        self.reconnects = 0
        # The client name lets an operator (and the tests) find the bus in CLIENT LIST.
        name = f"microforge-bus-{self.origin}"
        self._publisher, self._timeout = redis_client(url, client_name=name)
        # No retries for the subscriber: redis-py would reconnect and resubscribe behind
        # our back, and the handler would never hear that messages may have been lost.
        self._subscriber, _ = redis_client(url, client_name=name, retries=0)
        self._ping_interval = ping_interval
        self._max_backoff = max_backoff
        self._on_message: Handler | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """Whether the subscription is live (messages are arriving, none being missed)."""
        return self._pubsub is not None

    async def start(self, on_message: Handler) -> None:
        """Subscribe, then hand every message from another process to ``on_message``.

        Returns once the server confirmed the subscription; raises ``CacheUnavailable``
        (and runs nothing) when it cannot. Later connection losses are retried in the
        background with backoff, followed by ``on_message({"op": "resync"})``.
        """
        if self._reader is not None:
            raise RuntimeError("the invalidation bus is already started")
        self._on_message = on_message
        self._pubsub = await self._subscribe()
        self._reader = asyncio.create_task(
            self._read_forever(), name=f"invalidation bus {self.channel}"
        )

    async def publish(self, message: dict[str, Any]) -> None:
        """Send ``message`` (JSON) to the other processes; ``CacheUnavailable`` on failure."""
        payload = orjson.dumps({**message, "origin": self.origin})
        try:
            await self._publisher.publish(self.channel, payload)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis publish: {exc}") from exc

    async def aclose(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await _close_quietly(pubsub)
        await self._publisher.aclose()
        await self._subscriber.aclose()

    async def _subscribe(self) -> PubSub:
        """A pub/sub connection whose SUBSCRIBE the server has confirmed."""
        pubsub = self._subscriber.pubsub()
        try:
            # Connecting and the confirmation each get a socket timeout.
            async with asyncio.timeout(2 * self._timeout):
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message["type"] == "subscribe":
                        return pubsub
        except BaseException as exc:
            await _close_quietly(pubsub)
            if isinstance(exc, RedisError | OSError):  # TimeoutError is an OSError
                raise CacheUnavailable(f"redis subscribe: {exc or 'timed out'}") from exc
            raise

    async def _read_forever(self) -> None:
        backoff = 0.0
        while True:
            pubsub = self._pubsub
            if pubsub is None:
                try:
                    pubsub = await self._subscribe()
                except CacheUnavailable as exc:
                    backoff = min(self._max_backoff, max(FIRST_BACKOFF, 2 * backoff))
                    log.debug("invalidation bus %r: reconnect failed: %s", self.channel, exc)
                    await asyncio.sleep(random.uniform(backoff / 2, backoff))
                    continue
                self._pubsub = pubsub
                self.reconnects += 1
                backoff = 0.0
                log.info("invalidation bus %r: reconnected; resyncing", self.channel)
                await self._deliver({"op": "resync"})
            try:
                await self._listen(pubsub)
            except Exception as exc:
                if isinstance(exc, RedisError | OSError):
                    log.warning("invalidation bus %r: connection lost: %s", self.channel, exc)
                else:  # a bug; still keep listening rather than go deaf for good
                    log.exception("invalidation bus %r: reader failed", self.channel)
                self._pubsub = None
                await _close_quietly(pubsub)

    async def _listen(self, pubsub: PubSub) -> None:
        """Handle messages until the connection fails.

        A peer that vanished without closing the connection never makes a read fail, so
        after a silent ping interval a PING goes out, and a second one counts as lost.
        """
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self._ping_interval)
            if message is None:
                if pinged:
                    raise RedisConnectionError(f"no reply to PING in {self._ping_interval}s")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            if message["type"] == "message":
                await self._handle(message["data"])

    async def _handle(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("invalidation bus %r: ignoring a message that is not JSON", self.channel)
            return
        if not isinstance(message, dict) or message.get("origin") == self.origin:
            return
        self.received += 1
        await self._deliver(message)

    async def _deliver(self, message: dict[str, Any]) -> None:
        # A failing handler must not stop the reader: later messages still matter.
        assert self._on_message is not None
        try:
            result = self._on_message(message)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("invalidation bus %r: handler failed on %r", self.channel, message)


async def _close_quietly(pubsub: PubSub) -> None:
    try:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    except (RedisError, OSError) as exc:
        log.debug("closing a pub/sub connection failed: %s", exc)
