"""A cache stack for tests: a real backend wrapped to record what happens, in order.

``Recorder`` keeps one log for the cache and the database together: each backend call
(``cache.get``, ``cache.set``, ``cache.delete``, ``cache.incr``) and each SQL statement
(``db.select``, ``db.insert``, ``db.update``, ``db.delete``) the engine sends. Tests
assert on that sequence: which of the two were read and written, and in which order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from support.runtime_service import timestamp_columns

from microforge.runtime.cache.backends import Backend


class Recorder:
    def __init__(self) -> None:
        self.log: list[str] = []

    def clear(self) -> None:
        self.log.clear()

    def watch(self, engine: AsyncEngine, table: str) -> None:
        """Record the statements ``engine`` sends that touch ``table``."""

        def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            text = statement.lstrip().lower()
            verb = text.split(None, 1)[0] if text else ""
            if table in text and verb in ("select", "insert", "update", "delete"):
                self.log.append(f"db.{verb}")

        event.listen(engine.sync_engine, "before_cursor_execute", before)


class RecordingBackend:
    """Forwards to a real backend and records each call; counters are logged by name."""

    def __init__(self, backend: Backend, recorder: Recorder) -> None:
        self._backend = backend
        self._recorder = recorder
        self.kind = backend.kind
        self.shared = backend.shared

    def _note(self, op: str, keys: Sequence[str]) -> None:
        self._recorder.log.append(f"cache.{op}")

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._note("get", keys)
        return await self._backend.get_many(keys)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._note("set", [key])
        await self._backend.set(key, value, ttl)

    async def delete(self, *keys: str) -> None:
        self._note("delete", keys)
        await self._backend.delete(*keys)

    async def incr(self, key: str) -> int:
        self._note("incr", [key])
        return await self._backend.incr(key)

    def stats(self) -> dict[str, int]:
        return self._backend.stats()

    async def ping(self) -> None:
        await self._backend.ping()

    async def aclose(self) -> None:
        await self._backend.aclose()


metadata = sa.MetaData()
products = sa.Table(
    "cache_products",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(40), nullable=False),
    sa.Column("price", sa.Integer(), nullable=False),
    sa.Column("owner", sa.String(40), nullable=False),
    *timestamp_columns(),
)
