"""The runtime contract suite runs every test on SQLite, PostgreSQL and MariaDB.

``engine_url`` is parametrized over the three: SQLite gets a file in the test's tmp
folder, the servers a brand-new database from ``postgres_url`` / ``mariadb_url`` (which
skip locally, and fail in CI, when ``scripts/test`` did not start the servers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support.runtime_service import create_app, create_database_engine

from microforge.runtime.db import sqlite_url

BACKENDS = ("sqlite", "postgres", "mariadb")


@pytest.fixture(params=BACKENDS)
def engine_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty database of each kind, as an async SQLAlchemy URL."""
    backend: str = request.param
    if backend == "sqlite":
        return sqlite_url(tmp_path_factory.mktemp("sqlite") / "runtime.db")
    url: str = request.getfixturevalue(f"{backend}_url")
    return url


@pytest.fixture
async def engine(engine_url: str) -> AsyncIterator[AsyncEngine]:
    """The runtime's engine on ``engine_url``, with the contract tables created."""
    engine = await create_database_engine(engine_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the contract service on ``engine``."""
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
