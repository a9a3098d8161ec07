"""Engines per database kind, tuned for the request path."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

SUPPORTED_DRIVERS = frozenset(
    {"sqlite+aiosqlite", "postgresql+asyncpg", "mysql+asyncmy", "mariadb+asyncmy"}
)


def database_url_problem(url: str) -> str | None:
    """Why a database URL cannot be used (None when it can), for spec and settings alike."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return (
            f"expected a SQLAlchemy URL such as postgresql+asyncpg://user:pass@host/db, got {url!r}"
        )
    if parsed.drivername not in SUPPORTED_DRIVERS:
        dialect = parsed.drivername.partition("+")[0].replace("postgres", "postgresql")
        dialect = dialect.replace("postgresqlql", "postgresql")
        same = sorted(d for d in SUPPORTED_DRIVERS if d.partition("+")[0] == dialect)
        hint = f"; use '{same[0]}'" if same else ""
        return (
            f"unsupported driver '{parsed.drivername}'{hint} (supported: "
            f"{', '.join(sorted(SUPPORTED_DRIVERS))})"
        )
    return None


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def ensure_sqlite_folder(url: str) -> None:
    """SQLite creates the file but not its folder."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


class ServiceEngine(AsyncEngine):
    """An AsyncEngine that also owns a plain asyncpg pool for single-row reads by id.

    SQLAlchemy's async pool costs three greenlet hops per checkout; a GET by id on a
    direct asyncpg pool spends about half the CPU. Disposing the engine closes both.
    """

    __slots__ = ("_driver_pool", "_driver_pool_lock", "_driver_pool_size")

    def __init__(self, sync_engine: Any, driver_pool_size: int) -> None:
        super().__init__(sync_engine)
        self._driver_pool: asyncpg.Pool | None = None
        self._driver_pool_lock = asyncio.Lock()
        self._driver_pool_size = driver_pool_size

    async def driver_pool(self) -> asyncpg.Pool | None:
        """The asyncpg pool (made on first use), or None for other drivers."""
        if self.dialect.driver != "asyncpg" or self._driver_pool_size < 1:
            return None
        if self._driver_pool is None:
            async with self._driver_pool_lock:
                if self._driver_pool is None:
                    url = self.url.set(drivername="postgresql")
                    self._driver_pool = await asyncpg.create_pool(
                        url.render_as_string(hide_password=False),
                        min_size=1,
                        max_size=self._driver_pool_size,
                        init=_json_codecs,
                        reset=_nothing_to_reset,
                    )
        return self._driver_pool

    async def dispose(self, close: bool = True) -> None:
        pool, self._driver_pool = self._driver_pool, None
        if pool is not None:
            await pool.close()
        await super().dispose(close)


async def _json_codecs(conn: asyncpg.Connection) -> None:
    # The same decoding SQLAlchemy's asyncpg dialect installs: JSON arrives as Python data.
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(
            kind, encoder=_json_text, decoder=orjson.loads, schema="pg_catalog"
        )


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """This pool only runs prepared SELECTs: no session state to undo on release, so the
    default reset (unlock advisory locks, close cursors, unlisten) would be a wasted round
    trip per GET."""


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    options: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        ensure_sqlite_folder(url)
        options["connect_args"] = {"timeout": 30}
    else:
        options.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False)
        options["pool_recycle"] = 3600
    engine = create_async_engine(url, **options)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return ServiceEngine(engine.sync_engine, driver_pool_size=pool_size)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # Foreign keys are off by default in SQLite; WAL lets readers run beside one writer.
    cursor.execute("PRAGMA foreign_keys=ON")
    # LIKE ignores ASCII case by default; `contains`, `startswith` and `endswith` are
    # case-sensitive as on PostgreSQL (ILIKE compiles to lower() LIKE lower(), unaffected).
    cursor.execute("PRAGMA case_sensitive_like=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
