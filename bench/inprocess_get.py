"""CPU per GET-one request inside one process: no HTTP, no load generator.

Calls the generated catalog app's ASGI callable directly for a GET by id, and compares
the asyncpg read pool with and without asyncpg's per-release reset, alternating, so the
two settings see the same machine state. Needs a PostgreSQL admin URL:

    uv run python bench/inprocess_get.py postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvloop

HERE = Path(__file__).resolve().parent
REQUESTS = 3000


async def measure(app: Any, path: str, label: str) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1),
        "server": ("bench", 80), "state": {},
    }  # fmt: skip
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(300):
        await app(dict(scope), receive, send)
    started = time.process_time()
    for _ in range(REQUESTS):
        await app(dict(scope), receive, send)
    cpu_us = 1e6 * (time.process_time() - started) / REQUESTS
    assert set(statuses) == {200}, set(statuses)
    print(f"{label:28} {cpu_us:6.0f} CPU-µs per GET")


async def main(admin_url: str) -> None:
    name = f"inprocess_{uuid.uuid4().hex[:8]}"
    plain = admin_url.replace("postgresql+asyncpg", "postgresql")
    admin = await asyncpg.connect(plain)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "project"
            subprocess.run(
                [sys.executable, "-m", "microforge.cli", "generate",
                 str(HERE / "specs" / "catalog.yaml"), "-o", str(out)],
                check=True, capture_output=True,
            )  # fmt: skip
            sys.path.insert(0, str(out / "services" / "catalog"))
            from catalog_service.generated.app import create_app  # type: ignore[import-not-found]
            from catalog_service.generated.settings import Settings  # type: ignore[import-not-found]
            from catalog_service.generated.tables import metadata  # type: ignore[import-not-found]

            import microforge.runtime.db as db

            app = create_app(Settings(database_url=url))
            engine = app.state.engine
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench"
            ) as client:
                category = (await client.post("/categories", json={"name": "c"})).json()
                body = {"name": "p", "price": "1.00", "stock": 1, "category_id": category["id"]}
                product = (await client.post("/products", json=body)).json()
            path = f"/products/{product['id']}"
            no_reset = db._nothing_to_reset
            for _ in range(3):
                for label, reset in (("pool without reset (default)", no_reset),
                                     ("pool with asyncpg's reset", None)):  # fmt: skip
                    await engine.dispose()  # the next GET makes a new read pool
                    db._nothing_to_reset = reset  # type: ignore[assignment]
                    await measure(app, path, label)
            db._nothing_to_reset = no_reset
            await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    uvloop.run(main(sys.argv[1]))
