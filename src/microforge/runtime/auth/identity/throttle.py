"""Login throttling kept in ``auth_login_attempts``, so every instance shares the counts.

Each key (one per e-mail, one per client address) counts failures in a fixed window;
reaching the limit locks the key for one window. Every change is a single conditional
UPDATE (or an INSERT for a new key), atomic on each database without row locks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@dataclass(frozen=True, slots=True)
class ThrottleKey:
    key: str
    limit: int


def email_key(email: str, limit: int) -> ThrottleKey:
    # Hashed: e-mail addresses may be longer than the key column, and the table need not
    # hold who tried to log in.
    digest = hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()
    return ThrottleKey(f"email:{digest}", limit)


def client_address(peer: str | None, forwarded_for: str | None, hops: int) -> str | None:
    """The client's IP address: the socket peer, or the X-Forwarded-For entry the
    ``hops``-th trusted proxy appended (entries further left can be forged by anyone)."""
    candidate = peer
    if hops > 0 and forwarded_for:
        chain = [part.strip() for part in forwarded_for.split(",")]
        if len(chain) >= hops:
            candidate = chain[-hops]
    if candidate is None:
        return None
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None  # not an address (e.g. a test client's name): no per-address limit


class LoginThrottle:
    def __init__(
        self,
        engine: AsyncEngine,
        table: sa.Table,
        *,
        window: int,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.engine = engine
        self.table = table
        self.window = dt.timedelta(seconds=window)
        self.clock = clock

    async def retry_after(self, keys: Sequence[ThrottleKey]) -> int | None:
        """Seconds until every key is unlocked, or None when none is locked."""
        t = self.table
        now = self.clock()
        query = sa.select(sa.func.max(t.c.locked_until)).where(
            t.c.key.in_([k.key for k in keys]), t.c.locked_until > now
        )
        async with self.engine.connect() as conn:
            until: dt.datetime | str | None = (await conn.execute(query)).scalar_one_or_none()
        if until is None:
            return None
        # The column type makes it aware again; max() over it may lose the type on SQLite.
        if isinstance(until, str):
            until = dt.datetime.fromisoformat(until)
        if until.tzinfo is None:
            until = until.replace(tzinfo=dt.UTC)
        return max(1, math.ceil((until - now).total_seconds()))

    async def record_failure(self, keys: Sequence[ThrottleKey]) -> None:
        for key in keys:
            for attempt in range(3):
                try:
                    async with self.engine.begin() as conn:
                        await self._count(conn, key)
                    break
                except IntegrityError:
                    # Another instance inserted the same new key first: count again.
                    if attempt == 2:
                        raise
        if secrets.randbelow(64) == 0:
            await self._forget_stale()

    async def clear(self, key: ThrottleKey) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(self.table).where(self.table.c.key == key.key))

    async def _count(self, conn: AsyncConnection, key: ThrottleKey) -> None:
        t = self.table
        now = self.clock()
        current = t.c.key == key.key
        counted = await conn.execute(
            sa.update(t)
            .where(current, t.c.window_started_at > now - self.window)
            .values(failures=t.c.failures + 1)
        )
        if not counted.rowcount:
            # No row, or its window is over (a lock ends a window after it started).
            restarted = await conn.execute(
                sa.update(t)
                .where(current)
                .values(failures=1, window_started_at=now, locked_until=None)
            )
            if not restarted.rowcount:
                await conn.execute(
                    sa.insert(t).values(
                        key=key.key, failures=1, window_started_at=now, locked_until=None
                    )
                )
        await conn.execute(
            sa.update(t)
            .where(current, t.c.failures >= key.limit, t.c.locked_until.is_(None))
            .values(locked_until=now + self.window)
        )

    async def _forget_stale(self) -> None:
        """Drop keys whose window and lock are over, now and then, so the table stays small."""
        t = self.table
        now = self.clock()
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.delete(t).where(
                    t.c.window_started_at <= now - self.window,
                    sa.or_(t.c.locked_until.is_(None), t.c.locked_until <= now),
                )
            )
