"""Single flight: concurrent misses of one key share one load."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[T]] = {}

    def running(self, key: str) -> bool:
        return key in self._running

    async def do(self, key: str, load: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``load()``'s result, and whether this call joined a load already running.

        The load runs as its own task: a caller that gives up (a client disconnects)
        does not cancel it for the others waiting on it.
        """
        task = self._running.get(key)
        joined = task is not None
        if task is None:
            task = asyncio.ensure_future(load())
            self._running[key] = task
            task.add_done_callback(lambda _: self._forget(key, task))
        return await asyncio.shield(task), joined

    def start(self, key: str, load: Callable[[], Awaitable[T]]) -> None:
        """Run ``load`` in the background unless it is already running."""
        if key in self._running:
            return
        task = asyncio.ensure_future(load())
        self._running[key] = task
        task.add_done_callback(lambda _: self._forget(key, task))

    def _forget(self, key: str, task: asyncio.Task[T]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failed background refresh is not an error to log twice

    async def wait(self) -> None:
        """Until every running load has finished (for shutdown and tests)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
