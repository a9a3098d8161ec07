"""A service called straight from a browser app (no gateway) allows the retry headers."""

from __future__ import annotations

from pathlib import Path

import httpx

from microforge.runtime.db import create_engine, sqlite_url
from microforge.runtime.service_app import create_service_app

ORIGIN = "https://app.example.com"


def _names(value: str) -> set[str]:
    return {name.strip().lower() for name in value.split(",")}


async def test_cors_allows_idempotency_and_precondition_headers(tmp_path: Path) -> None:
    engine = create_engine(sqlite_url(tmp_path / "cors.db"))
    app = create_service_app(
        title="t", version="1", description="", engine=engine, cors_origins=[ORIGIN]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        preflight = await client.options(
            "/health/live",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "idempotency-key, if-match, content-type",
            },
        )
        simple = await client.get("/health/live", headers={"Origin": ORIGIN})
    await engine.dispose()
    assert preflight.status_code == 200
    allowed = _names(preflight.headers["access-control-allow-headers"])
    assert {"idempotency-key", "if-match", "content-type"} <= allowed
    exposed = _names(simple.headers["access-control-expose-headers"])
    assert {"etag", "location", "idempotent-replayed", "idempotency-key-expires"} <= exposed
