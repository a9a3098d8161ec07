"""CPU per POST with and without an Idempotency-Key, inside one process: no HTTP, no wrk.

Generates bench/idempotency.py's orders service, then calls its ASGI app directly through
httpx, alternating a POST with a new key and one without, on a SQLite file (or PostgreSQL
with --postgres-url). Prints CPU-µs per request (process time, which includes aiosqlite's
threads) and the difference; with --profile it prints cProfile's top functions of the
keyed POSTs instead. Pin it to a core for steadier numbers:

    taskset -c 0 uv run python bench/inprocess_idempotency.py
    taskset -c 0 uv run python bench/inprocess_idempotency.py --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from idempotency import PATH, generate
from run import create_postgres_database

BODY = {"customer": "c", "total": "9.90", "quantity": 1}


async def main(requests: int, postgres_url: str | None, profile: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        service = generate(Path(tmp))
        sys.path.insert(0, str(service))
        from orders_service.generated.app import create_app  # type: ignore[import-not-found]
        from orders_service.generated.settings import Settings  # type: ignore[import-not-found]
        from orders_service.generated.tables import metadata  # type: ignore[import-not-found]

        url = f"sqlite+aiosqlite:///{tmp}/orders.db"
        if postgres_url is not None:
            url = await create_postgres_database(postgres_url, f"inproc_{uuid.uuid4().hex[:8]}")
        app: Any = create_app(Settings(database_url=url))
        async with app.state.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

            async def post(keyed: bool) -> None:
                key = {"Idempotency-Key": f'"{uuid.uuid4()}"'} if keyed else {}
                response = await client.post(PATH, json=BODY, headers=key)
                assert response.status_code == 201, response.text

            for _ in range(300):  # warm-up: pools, compiled statements
                await post(True)
                await post(False)
            spent = {True: 0.0, False: 0.0}
            profiler = cProfile.Profile() if profile else None
            for _ in range(requests):
                for keyed in (True, False):
                    if profiler is not None and keyed:
                        profiler.enable()
                    started = time.process_time()
                    await post(keyed)
                    spent[keyed] += time.process_time() - started
                    if profiler is not None and keyed:
                        profiler.disable()
        await app.state.engine.dispose()
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    keyed_us, plain_us = (1e6 * spent[k] / requests for k in (True, False))
    print(f"POST with a new key  {keyed_us:6.0f} CPU-µs")
    print(f"POST without a key   {plain_us:6.0f} CPU-µs")
    print(f"added by the key     {keyed_us - plain_us:+6.0f} CPU-µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="of each kind")
    parser.add_argument("--postgres-url", help="an admin URL able to CREATE DATABASE")
    parser.add_argument("--profile", action="store_true", help="cProfile the keyed POSTs")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.postgres_url, args.profile))
