"""A process that keeps updating one row through a write-back cache (for the crash test).

Usage: python write_back_writer.py DATABASE_URL DELAY. Prints ``ready <id>`` once, then
``ack <n> <monotonic time>`` after each update n has been answered. On SIGTERM it
closes the cache (the graceful-shutdown flush) and prints ``closed``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

from recording import metadata, products  # type: ignore[import-not-found]

from microforge.runtime.cache.caching import Caching
from microforge.runtime.cache.config import CacheConfig
from microforge.runtime.cache.repository import CachedRepository
from microforge.runtime.db import create_engine
from microforge.runtime.resource import Resource


async def main(url: str, delay: float) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    caching = Caching("crash")
    config = CacheConfig(strategy="write-back", write_back_delay=delay, early_refresh=0)
    repo = caching.repository(engine, Resource(name="Product", table=products, cache=config))
    assert isinstance(repo, CachedRepository)
    row = await repo.create({"name": "counter", "price": 0, "owner": "ann"})
    print("ready", row["id"], flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    n = 0
    while not stop.is_set():
        n += 1
        await repo.update(row["id"], {"price": n})
        print("ack", n, time.monotonic(), flush=True)
        await asyncio.sleep(0.005)
    await caching.aclose()
    await engine.dispose()
    print("closed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
