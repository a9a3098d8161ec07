"""A distributed read-write lock on Redis, with leases and fencing tokens.

Readers share, a writer excludes everyone. Every hold is a lease that lapses on its own,
so a crashed holder blocks others for at most one lease. A holder that stalls past its
lease may still believe it holds the lock; each acquisition therefore returns a fencing
token (an INCR per lock name) and a store that remembers the highest token it has seen
refuses writes with a lower one (``fenced_set``).

Keys, all sharing the ``{name}`` hash tag so a Redis Cluster keeps them on one node:
``{name}:w`` the writer's id (with a PX lease), ``{name}:r`` readers' ids scored by lease
end, ``{name}:wq`` waiting writers scored the same way, ``{name}:fence`` the token counter
(no expiry). Times come from the server's clock, so clients' clocks do not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final

import redis.asyncio
from redis.exceptions import NoScriptError, RedisError

from .backends import CacheUnavailable

log = logging.getLogger("microforge.cache.rwlock")

FIRST_POLL: Final = 0.002  # seconds between attempts at first; doubles up to MAX_POLL
MAX_POLL: Final = 0.05

_NOW_MS: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: writer, readers, waiting writers, fence. ARGV: holder id, lease in ms.
# A waiting writer blocks new readers: that is what keeps writers from starving.
_ACQUIRE_READ: Final = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('ZCARD', KEYS[3]) > 0 then
  return 0
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
if redis.call('PTTL', KEYS[2]) < lease then redis.call('PEXPIRE', KEYS[2], lease) end
return redis.call('INCR', KEYS[4])
"""
)

# Same KEYS and ARGV. When it cannot take the lock, it records (or renews) the intent to
# write, which lapses after one lease if this waiter dies.
_ACQUIRE_WRITE: Final = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local lease = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', lease)
  redis.call('ZREM', KEYS[3], ARGV[1])
  return redis.call('INCR', KEYS[4])
end
redis.call('ZADD', KEYS[3], now + lease, ARGV[1])
if redis.call('PTTL', KEYS[3]) < lease then redis.call('PEXPIRE', KEYS[3], lease) end
return 0
"""
)

# KEYS: writer, waiting writers. ARGV: holder id. Only the caller's own hold (or intent)
# goes: after its lease lapsed the key may belong to the next writer.
_RELEASE_WRITE: Final = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: readers. ARGV: holder id. Returns 0 when the hold's lease had already ended.
_RELEASE_READ: Final = (
    _NOW_MS
    + """
local lease_end = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if lease_end and tonumber(lease_end) > now then
  return 1
end
return 0
"""
)

# KEYS: the guarded key (a hash). ARGV: value, token. Equal tokens pass: one holder may
# write more than once.
_FENCED_SET: Final = """
local last = redis.call('HGET', KEYS[1], 'token')
if last and tonumber(last) > tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'value', ARGV[1], 'token', ARGV[2])
return 1
"""


class LockTimeout(TimeoutError):
    """The lock was not acquired within the timeout."""


class _Script:
    """A Lua script run by its SHA1, loaded into the server's script cache on first miss."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(
        self, client: redis.asyncio.Redis, keys: Sequence[str], args: Sequence[str | int | bytes]
    ) -> int:
        try:
            result = await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            result = await client.evalsha(self.sha, len(keys), *keys, *args)
        return int(result)


_acquire_read = _Script(_ACQUIRE_READ)
_acquire_write = _Script(_ACQUIRE_WRITE)
_release_read = _Script(_RELEASE_READ)
_release_write = _Script(_RELEASE_WRITE)
_fenced_set = _Script(_FENCED_SET)


class RedisReadWriteLock:
    """Shared ``read()`` and exclusive ``write()`` holds, each yielding a fencing token.

    Writer-preferring: once a writer waits, new readers wait too. Holds are not
    re-entrant and cannot be upgraded (a reader asking to write waits for itself until
    its timeout). Keep holds shorter than ``lease`` seconds; a hold that outlives its
    lease is logged on release, and only fencing tokens protect what it wrote after.
    """

    def __init__(self, redis: redis.asyncio.Redis, name: str, lease: float = 5.0) -> None:
        if not 0 < lease < math.inf:
            raise ValueError(f"lease must be a positive number of seconds, got {lease!r}")
        self._redis = redis
        self.name = name
        self.lease = lease
        self._lease_ms = max(1, math.ceil(lease * 1000))
        tag = "{" + name + "}"
        self._writer, self._readers = f"{tag}:w", f"{tag}:r"
        self._waiting, self._fence = f"{tag}:wq", f"{tag}:fence"

    def read(self, timeout: float = 5.0) -> AbstractAsyncContextManager[int]:
        """Hold the lock shared; yields the fencing token. ``LockTimeout`` after ``timeout``."""
        return self._hold(timeout, writer=False)

    def write(self, timeout: float = 5.0) -> AbstractAsyncContextManager[int]:
        """Hold the lock alone; yields the fencing token. ``LockTimeout`` after ``timeout``."""
        return self._hold(timeout, writer=True)

    @contextlib.asynccontextmanager
    async def _hold(self, timeout: float, *, writer: bool) -> AsyncIterator[int]:
        holder = uuid.uuid4().hex  # per hold, so a release never frees someone else's
        token = await self._acquire(holder, timeout, writer=writer)
        try:
            yield token
        finally:
            if not await self._release(holder, writer=writer):
                log.warning(
                    "%s lock %r: lease of %ss ran out before release (token %d)",
                    "write" if writer else "read",
                    self.name,
                    self.lease,
                    token,
                )

    async def _acquire(self, holder: str, timeout: float, *, writer: bool) -> int:
        script = _acquire_write if writer else _acquire_read
        keys = (self._writer, self._readers, self._waiting, self._fence)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = FIRST_POLL
        try:
            while True:
                token = await script(self._redis, keys, (holder, self._lease_ms))
                if token:
                    return token
                remaining = deadline - loop.time()
                if remaining <= 0:
                    kind = "write" if writer else "read"
                    raise LockTimeout(f"{kind} lock {self.name!r} not acquired in {timeout}s")
                await asyncio.sleep(min(remaining, random.uniform(delay / 2, delay)))
                delay = min(2 * delay, MAX_POLL)
        except BaseException as exc:
            # Withdraw a writer's intent, and a hold whose reply was lost on the way back.
            await self._release(holder, writer=writer)
            # LockTimeout is a TimeoutError, hence an OSError: keep it as it is.
            if isinstance(exc, RedisError | OSError) and not isinstance(exc, LockTimeout):
                raise CacheUnavailable(f"redis lock {self.name!r}: {exc}") from exc
            raise

    async def _release(self, holder: str, *, writer: bool) -> bool:
        """Drop this holder's hold; False if it had none (its lease ran out). Never raises
        for Redis errors: the lease frees the lock anyway."""
        try:
            if writer:
                released = await _release_write(
                    self._redis, (self._writer, self._waiting), (holder,)
                )
            else:
                released = await _release_read(self._redis, (self._readers,), (holder,))
        except (RedisError, OSError) as exc:
            log.warning("lock %r: release failed, the lease will free it: %s", self.name, exc)
            return True
        return bool(released)


async def fenced_set(redis: redis.asyncio.Redis, key: str, value: bytes, token: int) -> bool:
    """Store ``value`` under ``key`` unless a write with a higher fencing token came first.

    ``key`` holds a hash with fields ``value`` and ``token`` (read it with
    ``fenced_get``). Returns False, writing nothing, for a stale token: the writer's lease
    ran out and a newer holder has written since.
    """
    return bool(await _fenced_set(redis, (key,), (value, token)))


async def fenced_get(redis: redis.asyncio.Redis, key: str) -> bytes | None:
    """The value last stored by ``fenced_set``."""
    value = await redis.hget(key, "value")
    return value.encode() if isinstance(value, str) else value
