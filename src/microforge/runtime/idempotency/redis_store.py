"""Idempotency-Keys in Redis: the same protocol as the SQL store, with a weaker guarantee.

Redis is not the service's database, so a key cannot be completed inside the
transaction that made the change: ``complete()`` runs after that transaction commits
(and ignores ``conn``). A crash, a timeout or a Redis outage between the commit and
``complete()`` leaves the key running; once its lease ends, a retry with the same
payload takes the key over and runs the request *again*. Use the database store where
a change must happen exactly once; this one gives at-most-once while Redis and the
process stay up, and saves the database a write per request.

One hash per key, at ``mf:idem:{service}:{sha256 of (scope, key)}`` (the hash keeps
arbitrary printable-ASCII keys and long scopes to a short, fixed-size Redis key). Fields:
``state`` (running | done), ``fingerprint``, ``token`` (fencing token of the holder),
``locked_until`` (end of the running lease), ``expires_at``, ``created_at`` (all integer
microseconds since the epoch), and once done ``status``, ``headers`` (JSON) and ``body``.
Every claim, completion and release is one Lua script, so each is atomic. Times come
from the client (``utcnow()``), as in the SQL store, so both stores judge leases and
retention alike; Redis only drops the hash on its own at ``expires_at`` (PEXPIREAT).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from ..cache.backends import redis_client
from ..types import utcnow
from .store import Claim, StoredResponse

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND: Final = dt.timedelta(microseconds=1)

# KEYS: the key's hash. ARGV: now, token, fingerprint, lease end, expires_at (microseconds),
# expires_at in milliseconds for PEXPIREAT.
# Replies {'acquired'}, {'running', fingerprint, expires_at, locked_until} or
# {'done', fingerprint, expires_at, status, headers, body}.
_CLAIM: Final = """
local fields = redis.call('HMGET', KEYS[1],
  'state', 'fingerprint', 'token', 'locked_until', 'expires_at')
local state, fingerprint, token = fields[1], fields[2], fields[3]
if state then
  -- Our own token: this very claim already ran and its reply was lost (the client
  -- retries a command once on a broken connection). Claiming stays idempotent.
  if token == ARGV[2] then return {'acquired'} end
  local now = tonumber(ARGV[1])
  local expired = tonumber(fields[5]) <= now
  -- A holder that never finished: only a retry of the same request may take over.
  local abandoned = state == 'running' and tonumber(fields[4]) <= now
    and fingerprint == ARGV[3]
  if not (expired or abandoned) then
    if state == 'done' then
      local response = redis.call('HMGET', KEYS[1], 'status', 'headers', 'body')
      return {'done', fingerprint, fields[5], response[1], response[2], response[3]}
    end
    return {'running', fingerprint, fields[5], fields[4]}
  end
end
-- New, expired or abandoned: start afresh (no old response fields survive), with a new
-- token, so the previous holder can no longer complete or release it.
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'running', 'fingerprint', ARGV[3], 'token', ARGV[2],
  'locked_until', ARGV[4], 'expires_at', ARGV[5], 'created_at', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
return {'acquired'}
"""

# KEYS: the key's hash. ARGV: token, status, headers, body. Fencing: a holder whose key
# was taken over (or expired) stores nothing. HSET keeps the hash's expiry.
_COMPLETE: Final = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2], 'headers', ARGV[3],
  'body', ARGV[4])
redis.call('HDEL', KEYS[1], 'locked_until')
return 1
"""

# KEYS: the key's hash. ARGV: token. Only the holder may free the key.
_RELEASE: Final = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class RedisIdempotencyStore:
    transactional = False

    def __init__(self, url: str, service: str) -> None:
        self._redis, _ = redis_client(url)
        # The service keeps keys of services sharing one Redis apart.
        self.prefix = f"mf:idem:{service}:"
        self._claim = self._redis.register_script(_CLAIM)
        self._complete = self._redis.register_script(_COMPLETE)
        self._release = self._redis.register_script(_RELEASE)

    def redis_key(self, scope: str, key: str) -> str:
        # The scope's length first: ("a:", "b") and ("a", ":b") never share a hash.
        raw = scope.encode()
        digest = hashlib.sha256(b"%d:%s%s" % (len(raw), raw, key.encode())).hexdigest()
        return self.prefix + digest

    async def claim(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        *,
        lease: float,
        retention: float,
        conn: AsyncConnection | None = None,  # for the SQL store; Redis has its own
    ) -> Claim:
        now = utcnow()
        token = secrets.token_hex(16)
        expires_at = now + dt.timedelta(seconds=retention)
        expires_us = _micros(expires_at)
        args = (
            _micros(now),
            token,
            fingerprint,
            _micros(now + dt.timedelta(seconds=lease)),
            expires_us,
            -(-expires_us // 1000),  # rounded up: Redis drops the hash no earlier
        )
        reply: list[Any] = await self._claim(keys=[self.redis_key(scope, key)], args=args)
        state = reply[0]
        if state == b"acquired":
            return Claim("acquired", fingerprint, expires_at, token=token)
        found_fingerprint, found_expires = reply[1].decode(), _moment(reply[2])
        if state == b"done":
            status, headers, body = reply[3:6]
            pairs = [(name, value) for name, value in json.loads(headers)]
            response = StoredResponse(int(status), pairs, body or b"")
            return Claim("done", found_fingerprint, found_expires, response=response)
        return Claim("running", found_fingerprint, found_expires, locked_until=_moment(reply[3]))

    async def complete(
        self,
        scope: str,
        key: str,
        token: str,
        response: StoredResponse,
        conn: AsyncConnection | None = None,  # unused: Redis is outside the transaction
    ) -> bool:
        headers = json.dumps([list(pair) for pair in response.headers])
        args = (token, response.status, headers, response.body)
        return bool(await self._complete(keys=[self.redis_key(scope, key)], args=args))

    async def release(self, scope: str, key: str, token: str) -> None:
        await self._release(keys=[self.redis_key(scope, key)], args=(token,))

    async def purge(self) -> int:
        """Nothing to do: Redis drops each hash at its ``expires_at``."""
        return 0

    async def aclose(self) -> None:
        await self._redis.aclose()


def _micros(moment: dt.datetime) -> int:
    """Whole microseconds since the epoch: exact in a Lua number (below 2**53)."""
    return (moment - _EPOCH) // _MICROSECOND


def _moment(micros: bytes) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=int(micros))
