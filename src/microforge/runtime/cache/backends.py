"""Where cache entries live: this process's memory, Redis or memcached.

Values are opaque bytes and keys printable ASCII. A remote server that is down or slow
raises ``CacheUnavailable`` (never a driver error), so callers can fall back to the
database instead of failing the request.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiomcache
import redis.asyncio
from aiomcache.exceptions import ClientException, ValidationException
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .policies import POLICIES, Policy, Store, make_store

T = TypeVar("T")

DEFAULT_TIMEOUT: Final = 0.5
DEFAULT_MEMCACHED_POOL_SIZE: Final = 4
ACCEPTED_URLS: Final = "memory://, redis://, rediss://, unix:// or memcached://"

# memcached's key rule (printable ASCII, no spaces, at most 250 bytes), checked for every
# backend so a bad key fails in tests on the memory backend too.
_KEY: Final = re.compile(r"[!-~]{1,250}")
# memcached reads an exptime above 30 days as a unix time, not a number of seconds.
_MEMCACHED_MAX_RELATIVE: Final = 30 * 24 * 3600


class CacheUnavailable(Exception):
    """The cache server could not be reached, or did not answer in time."""


class Backend(Protocol):
    kind: str  # "memory" | "redis" | "memcached"
    shared: bool  # other processes see the same entries

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys`` in order (None for a miss), in one round trip."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds (> 0)."""
        ...

    async def delete(self, *keys: str) -> None: ...

    async def incr(self, key: str) -> int:
        """Bump a counter that never expires; a missing one starts at a random value."""
        ...

    def stats(self) -> dict[str, int]: ...

    async def ping(self) -> None:
        """Raise ``CacheUnavailable`` when the server cannot be reached."""
        ...

    async def aclose(self) -> None: ...


def open_backend(url: str, *, policy: str = "tinylfu", capacity: int = 10_000) -> Backend:
    """The backend a cache URL names; ``policy``/``capacity`` only apply to memory://."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return MemoryBackend(policy, capacity)
    if scheme in {"redis", "rediss", "unix"}:
        return RedisBackend(url)
    if scheme == "memcached":
        return MemcachedBackend(url)
    # Only the scheme is echoed: the URL may carry a password.
    shown = f"scheme {scheme!r}" if scheme else "a URL without a scheme"
    raise ValueError(f"unsupported cache URL ({shown}): use {ACCEPTED_URLS}")


def counter_start() -> int:
    """A random 62-bit start: a counter lost to eviction or a restart never repeats.

    The headroom to 2**63 leaves room for ~4.6e18 increments on either server.
    """
    return secrets.randbits(62)


def split_timeout(url: str) -> tuple[str, float]:
    """``url`` without its ``?timeout=SECONDS`` option, and that timeout (or the default)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    timeout = DEFAULT_TIMEOUT
    for name, value in pairs:
        if name == "timeout":
            timeout = _positive_number(value, "timeout")
    rest = [(name, value) for name, value in pairs if name != "timeout"]
    return urlunsplit(parts._replace(query=urlencode(rest))), timeout


def redis_client(
    url: str, *, client_name: str | None = None, retries: int = 1
) -> tuple[redis.asyncio.Redis, float]:
    """A redis.asyncio client for ``url`` (own connection pool) and its socket timeout.

    The default single immediate retry on a new connection covers a pooled connection the
    server closed while idle. Timeouts are never retried: a stalled server costs one
    timeout. ``?timeout=SECONDS`` in the URL sets the timeout (default 0.5).
    """
    url, timeout = split_timeout(url)
    client = redis.asyncio.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), retries, supported_errors=(RedisConnectionError,)),
        client_name=client_name,
    )
    return client, timeout


def _positive_number(value: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 < number < math.inf:
        raise ValueError(f"cache URL option {name} must be a positive number, got {value!r}")
    return number


def _check_keys(keys: Sequence[str]) -> None:
    for key in keys:
        if not _KEY.fullmatch(key):
            raise ValueError(
                f"cache key must be 1-250 printable ASCII characters without spaces: {key!r}"
            )


def _check_ttl(ttl: float) -> None:
    if not 0 < ttl < math.inf:
        raise ValueError(f"cache ttl must be a positive number of seconds, got {ttl!r}")


class MemoryBackend:
    """A bounded store in this process: no network, but every process has its own copy.

    Counters live in a plain dict beside the store, so eviction never resets them.
    """

    kind = "memory"
    shared = False

    def __init__(
        self,
        policy: str = "tinylfu",
        capacity: int = 10_000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock  # the store's clock too: expires_at is on it
        self._store: Store[str, bytes] = make_store(_as_policy(policy), capacity, clock)
        self._counters: dict[str, int] = {}

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        _check_keys(keys)
        values: list[bytes | None] = []
        for key in keys:
            counter = self._counters.get(key)
            values.append(self._store.get(key) if counter is None else b"%d" % counter)
        return values

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        _check_keys((key,))
        _check_ttl(ttl)
        self._counters.pop(key, None)
        self._store.put(key, value, self._clock() + ttl)

    async def delete(self, *keys: str) -> None:
        _check_keys(keys)
        for key in keys:
            self._counters.pop(key, None)
            self._store.pop(key)

    async def incr(self, key: str) -> int:
        _check_keys((key,))
        value = self._counters.get(key)
        if value is None:
            self._store.pop(key)  # the key now names a counter, as after SET + INCR remotely
            value = counter_start()
        value += 1
        self._counters[key] = value
        return value

    def stats(self) -> dict[str, int]:
        store = self._store
        return {
            "size": len(store),
            "capacity": store.capacity,
            "evictions": store.evictions,
            "rejections": store.rejections,
            "expirations": store.expirations,
            "counters": len(self._counters),
        }

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        self._store.clear()
        self._counters.clear()


def _as_policy(name: str) -> Policy:
    for policy in POLICIES:
        if policy == name:
            return policy
    raise ValueError(f"unknown cache policy {name!r} (known: {', '.join(POLICIES)})")


class RedisBackend:
    """Redis through one connection pool: MGET reads, SET PX writes, INCR counters."""

    kind = "redis"
    shared = True

    def __init__(self, url: str) -> None:
        self._redis, self.timeout = redis_client(url)
        self._errors = 0

    async def _call(self, op: Awaitable[T]) -> T:
        try:
            return await op
        except (RedisError, OSError) as exc:
            self._errors += 1
            raise CacheUnavailable(f"redis: {exc}") from exc

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        _check_keys(keys)
        if not keys:
            return []
        values = await self._call(self._redis.mget(keys))
        return [value.encode() if isinstance(value, str) else value for value in values]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        _check_keys((key,))
        _check_ttl(ttl)
        await self._call(self._redis.set(key, value, px=max(1, math.ceil(ttl * 1000))))

    async def delete(self, *keys: str) -> None:
        _check_keys(keys)
        if keys:
            # UNLINK frees large values off the server's main thread.
            await self._call(self._redis.unlink(*keys))

    async def incr(self, key: str) -> int:
        _check_keys((key,))

        async def run() -> int:
            # Both commands in one round trip; SET NX only seeds a missing counter.
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(key, counter_start(), nx=True)
                pipe.incr(key)
                _, value = await pipe.execute()
            return int(value)

        return await self._call(run())

    def stats(self) -> dict[str, int]:
        return {"errors": self._errors}

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def aclose(self) -> None:
        await self._redis.aclose()


class MemcachedBackend:
    """memcached through aiomcache: get_multi reads, whole-second expiry, add + incr counters.

    URL: ``memcached://host:port?timeout=0.5&pool_size=4``. aiomcache has no timeouts of
    its own, so every call runs under one deadline of ``timeout`` seconds.
    """

    kind = "memcached"
    shared = True

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.path not in {"", "/"}:
            raise ValueError("a memcached URL has no path: memcached://host:port")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.timeout = _positive_number(options.pop("timeout", str(DEFAULT_TIMEOUT)), "timeout")
        pool_size = options.pop("pool_size", str(DEFAULT_MEMCACHED_POOL_SIZE))
        if not pool_size.isdigit() or int(pool_size) < 1:
            raise ValueError(f"memcached URL option pool_size must be >= 1, got {pool_size!r}")
        if options:
            raise ValueError(
                f"unknown memcached URL option(s) {', '.join(sorted(options))} "
                "(known: timeout, pool_size)"
            )
        # aiomcache only grows its pool up to pool_minsize, so both are the pool size.
        self._client = aiomcache.Client(
            parts.hostname or "localhost",
            parts.port or 11211,
            pool_size=int(pool_size),
            pool_minsize=int(pool_size),
        )
        self._errors = 0
        self._refused = 0

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await op()
        except asyncio.CancelledError:
            await self._drop_idle_connections()
            raise
        except TimeoutError as exc:
            await self._drop_idle_connections()
            raise self._unavailable(f"no reply within {self.timeout}s") from exc
        except ValidationException:
            raise  # a bad argument is a bug, not an outage
        except (OSError, ClientException) as exc:
            raise self._unavailable(str(exc)) from exc

    async def _drop_idle_connections(self) -> None:
        # aiomcache puts a connection interrupted mid-reply back in its pool, where the next
        # call would read the rest of the old reply as its own. Closing the idle connections
        # right away (clear() does not suspend while there are any) means no other task can
        # take it; the pool opens new ones on demand.
        await self._client.close()

    def _unavailable(self, reason: str) -> CacheUnavailable:
        self._errors += 1
        return CacheUnavailable(f"memcached: {reason}")

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        _check_keys(keys)
        if not keys:
            return []
        unique = list(dict.fromkeys(keys))  # aiomcache refuses repeated keys
        values = await self._call(lambda: self._client.multi_get(*(key.encode() for key in unique)))
        found = dict(zip(unique, values, strict=True))
        return [found[key] for key in keys]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        _check_keys((key,))
        _check_ttl(ttl)
        raw_key, exptime = key.encode(), _memcached_exptime(ttl)

        async def run() -> None:
            try:
                await self._client.set(raw_key, value, exptime)
            except ClientException as exc:
                if "SERVER_ERROR" not in str(exc):
                    raise
                # Over the server's item size (-I) or out of memory: the value is simply
                # not cached. memcached drops the key's older value after a failed SET; the
                # delete makes sure a reader misses rather than sees that older value.
                self._refused += 1
                await self._client.delete(raw_key)

        await self._call(run)

    async def delete(self, *keys: str) -> None:
        _check_keys(keys)

        async def run() -> None:
            for key in dict.fromkeys(keys):
                await self._client.delete(key.encode())

        await self._call(run)

    async def incr(self, key: str) -> int:
        _check_keys((key,))
        raw_key = key.encode()

        async def run() -> int:
            for _ in range(3):
                # add() stores only when the key is missing: it seeds a new counter.
                await self._client.add(raw_key, b"%d" % counter_start())
                try:
                    value = await self._client.incr(raw_key)
                except ClientException as exc:
                    if "NOT_FOUND" in str(exc):
                        continue  # evicted between add and incr: seed it again
                    raise
                if value is not None:
                    return value
            raise ClientException("counter evicted between add and incr three times")

        return await self._call(run)

    def stats(self) -> dict[str, int]:
        return {"errors": self._errors, "refused": self._refused}

    async def ping(self) -> None:
        await self._call(self._client.version)

    async def aclose(self) -> None:
        await self._client.close()


def _memcached_exptime(ttl: float) -> int:
    """Whole seconds, rounded up; beyond 30 days as the absolute unix time memcached wants."""
    seconds = math.ceil(ttl)
    if seconds > _MEMCACHED_MAX_RELATIVE:
        return math.ceil(time.time()) + seconds
    return seconds
