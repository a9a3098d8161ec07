"""Throwaway databases on the servers that ``scripts/test`` starts.

``scripts/test`` exports admin URLs in ``MICROFORGE_TEST_POSTGRES_URL`` and
``MICROFORGE_TEST_MARIADB_URL``; these helpers create and drop uniquely named
databases through them. Each database is addressed by an async SQLAlchemy URL
string (``postgresql+asyncpg://...`` or ``mysql+asyncmy://...``).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Final

from sqlalchemy import URL, make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

POSTGRES_URL_ENV: Final = "MICROFORGE_TEST_POSTGRES_URL"
MARIADB_URL_ENV: Final = "MICROFORGE_TEST_MARIADB_URL"

_SAFE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_POSTGRES_BACKENDS: Final = frozenset({"postgresql"})
_MYSQL_BACKENDS: Final = frozenset({"mysql", "mariadb"})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def admin_url_from_env(env_var: str) -> str | None:
    """The admin URL in ``env_var``, or None when it is unset or blank."""
    value = os.environ.get(env_var, "").strip()
    return value or None


def unique_database_name(prefix: str = "mf_test") -> str:
    """A fresh lowercase database name, safe on PostgreSQL and MariaDB."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    _check_name(name)
    return name


def database_url(admin_url: str, name: str) -> str:
    """``admin_url`` pointed at database ``name``, password kept."""
    url: URL = make_url(admin_url).set(database=name)
    return url.render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def _admin_connection(admin_url: str) -> AsyncIterator[AsyncConnection]:
    """An autocommit connection for CREATE/DROP DATABASE, closed with its engine."""
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


def _quote(conn: AsyncConnection, name: str) -> str:
    _check_name(name)
    return conn.dialect.identifier_preparer.quote_identifier(name)


async def create_database(admin_url: str, name: str) -> str:
    """Create the empty database ``name`` and return an async URL for it."""
    async with _admin_connection(admin_url) as conn:
        quoted = _quote(conn, name)
        if _backend(admin_url) in _POSTGRES_BACKENDS:
            await conn.execute(text(f"CREATE DATABASE {quoted} ENCODING 'UTF8'"))
        else:
            charset = "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            await conn.execute(text(f"CREATE DATABASE {quoted} {charset}"))
    return database_url(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, ending any sessions still on it."""
    async with _admin_connection(admin_url) as conn:
        quoted = _quote(conn, name)
        if _backend(admin_url) in _POSTGRES_BACKENDS:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        else:
            await _kill_mysql_sessions(conn, name)
            await conn.execute(text(f"DROP DATABASE IF EXISTS {quoted}"))


async def database_exists(admin_url: str, name: str) -> bool:
    """Whether the server behind ``admin_url`` has a database called ``name``."""
    if _backend(admin_url) in _POSTGRES_BACKENDS:
        query = text("SELECT 1 FROM pg_database WHERE datname = :name")
    else:
        query = text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name")
    async with _admin_connection(admin_url) as conn:
        found = (await conn.execute(query, {"name": name})).first()
    return found is not None


class DatabaseFactory:
    """Creates fresh databases on one server and drops them all on ``cleanup``."""

    def __init__(self, admin_url: str, prefix: str = "mf_test") -> None:
        self.admin_url = admin_url
        self.prefix = prefix
        self.created: list[str] = []

    async def __call__(self) -> str:
        """A brand-new empty database; returns its async URL."""
        name = unique_database_name(self.prefix)
        url = await create_database(self.admin_url, name)
        self.created.append(name)
        return url

    async def cleanup(self) -> None:
        errors: list[Exception] = []
        while self.created:
            name = self.created.pop()
            try:
                await drop_database(self.admin_url, name)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise ExceptionGroup("could not drop test databases", errors)


async def _kill_mysql_sessions(conn: AsyncConnection, name: str) -> None:
    # A leaked connection holding a metadata lock would make DROP DATABASE hang.
    rows = await conn.execute(
        text(
            "SELECT ID FROM information_schema.PROCESSLIST "
            "WHERE DB = :name AND ID <> CONNECTION_ID()"
        ),
        {"name": name},
    )
    for (session_id,) in rows.all():
        # The session may have ended on its own meanwhile.
        with contextlib.suppress(Exception):
            await conn.execute(text(f"KILL {int(session_id)}"))


def _backend(admin_url: str) -> str:
    url = make_url(admin_url)
    backend = url.get_backend_name()
    if backend not in _POSTGRES_BACKENDS | _MYSQL_BACKENDS:
        raise ValueError(f"unsupported test database backend {backend!r} in {url!r}")
    return backend


def _check_name(name: str) -> None:
    if not _SAFE_NAME.fullmatch(name):
        raise ValueError(f"unsafe test database name {name!r}")
