"""Shared pytest fixtures.

Database fixtures: ``postgres_url`` and ``mariadb_url`` give each test that
asks a brand-new, uniquely named, empty database (an async SQLAlchemy URL
string), dropped after the test. ``postgres_database_factory`` and
``mariadb_database_factory`` make as many as a test needs. The servers come
from ``scripts/test``; without them these tests are skipped locally and fail
in CI.

Cache server fixtures: ``redis_url`` and ``memcached_url`` give the URL of the
one Redis and one memcached server ``scripts/test`` starts (same skip/fail
rule). Every test shares them, so keys need a per-test prefix.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from support.databases import (
    MARIADB_URL_ENV,
    POSTGRES_URL_ENV,
    DatabaseFactory,
    admin_url_from_env,
)

REDIS_URL_ENV = "MICROFORGE_TEST_REDIS_URL"
MEMCACHED_URL_ENV = "MICROFORGE_TEST_MEMCACHED_URL"


def _admin_url(env_var: str, server: str) -> str:
    return _server_url(env_var, server, "an admin URL")


def _server_url(env_var: str, server: str, url_kind: str) -> str:
    """The URL in ``env_var``; without it, fail under CI and skip (saying why) otherwise."""
    url = admin_url_from_env(env_var)
    if url is not None:
        return url
    reason = (
        f"{env_var} is not set, so there is no {server} server to test against: "
        "run the tests with scripts/test, which starts one "
        f"(or set {env_var} to {url_kind} of your own server)"
    )
    if os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}:
        pytest.fail(reason, pytrace=False)
    print(f"skipping: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """Admin URL of the test PostgreSQL server (may CREATE/DROP DATABASE)."""
    return _admin_url(POSTGRES_URL_ENV, "PostgreSQL")


@pytest.fixture(scope="session")
def mariadb_admin_url() -> str:
    """Admin URL of the test MariaDB server (may CREATE/DROP DATABASE)."""
    return _admin_url(MARIADB_URL_ENV, "MariaDB")


@pytest.fixture
async def postgres_database_factory(postgres_admin_url: str) -> AsyncIterator[DatabaseFactory]:
    """``await factory()`` gives a fresh PostgreSQL database URL; all dropped afterwards."""
    factory = DatabaseFactory(postgres_admin_url)
    try:
        yield factory
    finally:
        await factory.cleanup()


@pytest.fixture
async def mariadb_database_factory(mariadb_admin_url: str) -> AsyncIterator[DatabaseFactory]:
    """``await factory()`` gives a fresh MariaDB database URL; all dropped afterwards."""
    factory = DatabaseFactory(mariadb_admin_url)
    try:
        yield factory
    finally:
        await factory.cleanup()


@pytest.fixture
async def postgres_url(postgres_database_factory: DatabaseFactory) -> str:
    """A brand-new empty PostgreSQL database: ``postgresql+asyncpg://.../<name>``."""
    return await postgres_database_factory()


@pytest.fixture
async def mariadb_url(mariadb_database_factory: DatabaseFactory) -> str:
    """A brand-new empty MariaDB database: ``mysql+asyncmy://.../<name>``."""
    return await mariadb_database_factory()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the test Redis server (``redis://127.0.0.1:PORT/0``).

    Shared by every test: use a unique key prefix, and never flush the server.
    """
    return _server_url(REDIS_URL_ENV, "Redis", "a URL")


@pytest.fixture(scope="session")
def memcached_url() -> str:
    """URL of the test memcached server (``memcached://127.0.0.1:PORT``).

    Shared by every test: use a unique key prefix, and never flush the server.
    """
    return _server_url(MEMCACHED_URL_ENV, "memcached", "a URL")
