"""Fixtures for the identity endpoint tests.

``identity`` runs the service on SQLite; ``identity_on`` runs the core flows on SQLite,
PostgreSQL and MariaDB (the servers skip locally, and fail in CI, when ``scripts/test``
did not start them). ``start_identity`` makes one with other settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from support.identity_app import Identity, StartIdentity, running_identity

from microforge.runtime.db import sqlite_url


@pytest.fixture
def start_identity(tmp_path: Path) -> StartIdentity:
    """``async with start_identity(signup=False) as identity:`` (SQLite, own key folder)."""
    made = [0]

    def start(url: str | None = None, **overrides: Any) -> AbstractAsyncContextManager[Identity]:
        made[0] += 1
        folder = tmp_path / f"identity{made[0]}"
        folder.mkdir()
        database = url or sqlite_url(folder / "identity.db")
        return running_identity(database, folder / "keys", **overrides)

    return start


@pytest.fixture
async def identity(start_identity: StartIdentity) -> AsyncIterator[Identity]:
    async with start_identity() as running:
        yield running


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def identity_database(request: pytest.FixtureRequest) -> str | None:
    """None for SQLite (a file in the test's folder), else a brand-new server database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def identity_on(
    identity_database: str | None, start_identity: StartIdentity
) -> AsyncIterator[Identity]:
    async with start_identity(identity_database) as running:
        yield running
