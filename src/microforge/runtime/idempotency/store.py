"""Where Idempotency-Keys live: the protocol, and the SQL store in the service's database.

A key is claimed before its request runs: the claim either takes the key (with a fencing
token and a lease), or reports the key's state: done (with the stored response), or still
running. The request then either completes the key (storing its response) or releases it.

The SQL store completes the key inside the transaction that made the change, so the two
commit or roll back together. Its fencing token makes that exactly-once even when a lease
runs out: a request whose key was taken over by a retry cannot complete it, and its
transaction rolls back.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..types import Blob, UTCDateTime, utcnow

TABLE_NAME = "idempotency_keys"
MAX_SCOPE_LENGTH = 255


def idempotency_table(metadata: MetaData) -> Table:
    """The keys table, added to a service's tables (and so to its migrations)."""
    return Table(
        TABLE_NAME,
        metadata,
        # Who sent the key (principal and tenant): keys of different callers never meet.
        Column("scope", String(MAX_SCOPE_LENGTH), primary_key=True),
        Column("idempotency_key", String(255), primary_key=True),
        Column("fingerprint", String(64), nullable=False),
        Column("state", String(8), nullable=False),  # running | done
        Column("token", String(32), nullable=False),  # fencing token of the holder
        Column("locked_until", UTCDateTime(), nullable=True),  # end of a running lease
        Column("expires_at", UTCDateTime(), nullable=False),
        Column("status", Integer(), nullable=True),
        Column("headers", JSON(), nullable=True),
        Column("body", Blob(), nullable=True),
        Column("created_at", UTCDateTime(), nullable=False),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )


TABLE = idempotency_table(MetaData())


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """What claiming a key found.

    ``acquired``: the caller holds the key with ``token`` and must complete or release it.
    ``done``: ``response`` is the stored answer. ``running``: another request holds it
    until ``locked_until``. ``fingerprint`` is the one of the request that made the key.
    """

    state: Literal["acquired", "done", "running"]
    fingerprint: str
    expires_at: dt.datetime
    token: str = ""
    response: StoredResponse | None = None
    locked_until: dt.datetime | None = None


class IdempotencyStore(Protocol):
    # Whether complete() takes the connection of the change's transaction.
    transactional: bool

    async def claim(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        *,
        lease: float,
        retention: float,
        conn: AsyncConnection | None = None,
    ) -> Claim:
        """Take the key or report its state. ``conn``, outside a transaction, is the
        connection the request will run on (a SQL store claims on it, saving a
        checkout); the claim is committed before this returns."""
        ...

    async def complete(
        self,
        scope: str,
        key: str,
        token: str,
        response: StoredResponse,
        conn: AsyncConnection | None = None,
    ) -> bool:
        """Store the response if ``token`` still holds the key; False if it lost it."""
        ...

    async def release(self, scope: str, key: str, token: str) -> None:
        """Forget the key if ``token`` holds it, so a retry runs again."""
        ...

    async def purge(self) -> int:
        """Drop expired keys; how many went."""
        ...

    async def aclose(self) -> None: ...


_CLAIM_ATTEMPTS = 4  # a claim races at most a takeover and a purge
# What a claim writes, new or taken over.
_HELD = (
    "fingerprint",
    "state",
    "token",
    "locked_until",
    "expires_at",
    "status",
    "headers",
    "body",
    "created_at",
)


class SqlIdempotencyStore:
    transactional = True

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Statements are built once; each call only binds values (the CPU of a keyed
        # request is mostly per-statement overhead on SQLite).
        self._insert = _insert_ignoring_duplicates(engine)
        # Bind names differ from column names: UPDATE reserves those for its SET values.
        this_key = (TABLE.c.scope == bindparam("b_scope")) & (
            TABLE.c.idempotency_key == bindparam("b_key")
        )
        held_by = this_key & (TABLE.c.token == bindparam("b_holder"))
        self._select = select(TABLE).where(this_key)
        self._take_over = (
            update(TABLE).where(held_by).values({c: bindparam(f"v_{c}") for c in _HELD})
        )
        self._complete = (
            update(TABLE)
            .where(held_by)
            .values(
                state="done",
                locked_until=None,
                status=bindparam("v_status"),
                headers=bindparam("v_headers", type_=TABLE.c.headers.type),
                body=bindparam("v_body", type_=TABLE.c.body.type),
            )
        )
        self._release = delete(TABLE).where(held_by)

    async def claim(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        *,
        lease: float,
        retention: float,
        conn: AsyncConnection | None = None,
    ) -> Claim:
        now = utcnow()
        token = secrets.token_hex(16)
        expires_at = now + dt.timedelta(seconds=retention)
        held: dict[str, Any] = {
            "fingerprint": fingerprint,
            "state": "running",
            "token": token,
            "locked_until": now + dt.timedelta(seconds=lease),
            "expires_at": expires_at,
            "status": None,
            "headers": None,
            "body": None,
            "created_at": now,
        }
        acquired = Claim("acquired", fingerprint, expires_at, token=token)
        this_key = {"b_scope": scope, "b_key": key}
        row: Any = None
        for _ in range(_CLAIM_ATTEMPTS):
            # Insert first: a new key, the common case, is then one statement.
            async with self._committed(conn) as own:
                inserted = await own.execute(
                    self._insert, {"scope": scope, "idempotency_key": key, **held}
                )
                if inserted.rowcount == 1:
                    return acquired
                row = (await own.execute(self._select, this_key)).mappings().first()
            if row is None:  # purged between the two statements: try again
                continue
            expired = row["expires_at"] <= now
            abandoned = (
                row["state"] == "running"
                and row["locked_until"] <= now
                and row["fingerprint"] == fingerprint
            )
            if not (expired or abandoned):
                break
            # Take the key over; the old holder's token no longer completes it.
            async with self._committed(conn) as own:
                taken = await own.execute(
                    self._take_over,
                    {**this_key, "b_holder": row["token"], **{f"v_{c}": held[c] for c in _HELD}},
                )
                if taken.rowcount == 1:
                    return acquired
        if row is None:
            raise RuntimeError(f"could not claim idempotency key {key!r}")
        if row["state"] == "done":
            response = StoredResponse(
                row["status"], [tuple(pair) for pair in row["headers"] or ()], row["body"] or b""
            )
            return Claim("done", row["fingerprint"], row["expires_at"], response=response)
        return Claim(
            "running", row["fingerprint"], row["expires_at"], locked_until=row["locked_until"]
        )

    @asynccontextmanager
    async def _committed(self, conn: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
        """``conn`` (or a pooled connection), with what ran on it committed on exit."""
        if conn is None:
            async with self.engine.connect() as own, self._committed(own) as same:
                yield same
            return
        try:
            yield conn
        finally:
            await conn.commit()

    async def complete(
        self,
        scope: str,
        key: str,
        token: str,
        response: StoredResponse,
        conn: AsyncConnection | None = None,
    ) -> bool:
        values = {
            "b_scope": scope,
            "b_key": key,
            "b_holder": token,
            "v_status": response.status,
            "v_headers": [list(pair) for pair in response.headers],
            "v_body": response.body,
        }
        if conn is not None:  # the change's transaction: the caller commits
            return bool((await conn.execute(self._complete, values)).rowcount)
        async with self._committed(None) as own:
            return bool((await own.execute(self._complete, values)).rowcount)

    async def release(self, scope: str, key: str, token: str) -> None:
        async with self._committed(None) as conn:
            await conn.execute(self._release, {"b_scope": scope, "b_key": key, "b_holder": token})

    async def purge(self) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(TABLE).where(TABLE.c.expires_at <= utcnow()))
            return int(result.rowcount or 0)

    async def aclose(self) -> None:
        """Nothing to close: the engine belongs to the service."""


def _insert_ignoring_duplicates(engine: AsyncEngine) -> Any:
    """INSERT that does nothing (rowcount 0) when the key exists, on every database."""
    name = engine.dialect.name
    if name == "postgresql":
        return postgresql.insert(TABLE).on_conflict_do_nothing()
    if name == "sqlite":
        return sqlite.insert(TABLE).on_conflict_do_nothing()
    return insert(TABLE).prefix_with("IGNORE")  # MySQL and MariaDB
