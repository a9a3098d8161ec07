"""Write-back (write-behind): updates land in the cache now and in the database soon.

A PATCH answers once the cache holds the new row; the change waits here, merged with any
later change to the same row, until the flush that follows within ``delay`` seconds (or
at once when ``max_pending`` rows are waiting, which makes that writer wait: the queue
cannot grow without bound). A graceful shutdown flushes; a killed process loses what is
pending, at most ``delay`` seconds of updates. docs/caching.md states that window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..types import utcnow
from .stats import CacheStats

log = logging.getLogger("microforge.cache")

Row = dict[str, Any]
Flush = Callable[[Any, Row], Awaitable[Row | None]]


class WriteBehind:
    def __init__(
        self,
        flush_one: Flush,
        after_flush: Callable[[list[Any], list[Any]], Awaitable[None]],
        *,
        delay: float,
        max_pending: int,
        stats: CacheStats,
    ) -> None:
        self._flush_one = flush_one
        self._after_flush = after_flush
        self.delay = delay
        self.max_pending = max_pending
        self._stats = stats
        self.pending: dict[Any, Row] = {}
        # The batch being written: still unflushed to readers until its writes are done.
        self._in_flight: dict[Any, Row] = {}
        self._timer: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()

    def add(self, id: Any, changes: Mapping[str, Any]) -> Row:
        """Queue ``changes`` to row ``id``; returns them with the new ``updated_at``."""
        queued = {**changes, "updated_at": utcnow()}
        self.pending[id] = {**self.pending.get(id, {}), **queued}
        if self._timer is None or self._timer.done():
            self._timer = asyncio.ensure_future(self._flush_later())
        return queued

    def changes(self, id: Any) -> Row:
        """Row ``id``'s changes not yet in the database (being flushed included)."""
        return {**self._in_flight.get(id, {}), **self.pending.get(id, {})}

    def overlay(self, id: Any, row: Row | None) -> Row | None:
        """``row`` as read from the database, with this row's unflushed changes on top."""
        changes = self.changes(id)
        if row is None or not changes:
            return row
        return {**row, **changes}

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.max_pending

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.delay)
        try:
            await self.flush()
        except Exception:
            log.exception("write-back flush failed")

    async def flush(self, only: Any = None) -> None:
        """Write pending changes (all, or only row ``only``'s) to the database."""
        async with self._flushing:
            if only is not None:
                batch = {only: self.pending.pop(only)} if only in self.pending else {}
            else:
                batch, self.pending = self.pending, {}
            if not batch:
                return
            written: list[Any] = []
            failed: list[Any] = []
            # A reader loading a row meanwhile (a cache miss) must still see its changes,
            # and a writer builds on their version.
            self._in_flight = batch
            try:
                for id, changes in batch.items():
                    try:
                        await self._flush_one(id, changes)
                        written.append(id)
                    except Exception as exc:  # dropped: the client got 200 already
                        failed.append(id)
                        log.error("write-back of row %s failed, change dropped: %s", id, exc)
            finally:
                self._in_flight = {}
            self._stats.write_back_flushed += len(written)
            self._stats.write_back_failed += len(failed)
            await self._after_flush(written, failed)

    async def aclose(self) -> None:
        """Flush everything (graceful shutdown)."""
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        await self.flush()
