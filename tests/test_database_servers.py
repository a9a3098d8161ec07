"""The throwaway database servers and the fresh-database fixtures work."""

from __future__ import annotations

from sqlalchemy import Connection, inspect, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from support.databases import (
    DatabaseFactory,
    create_database,
    database_exists,
    drop_database,
    unique_database_name,
)


def _table_names(conn: Connection) -> list[str]:
    return inspect(conn).get_table_names()


async def _assert_round_trip(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            assert await conn.run_sync(_table_names) == []
            await conn.execute(
                text("CREATE TABLE widget (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL)")
            )
            await conn.execute(
                text("INSERT INTO widget (id, name) VALUES (:id, :name)"),
                [{"id": 1, "name": "sprocket"}, {"id": 2, "name": "gear"}],
            )
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, name FROM widget ORDER BY id"))).all()
        assert [tuple(row) for row in rows] == [(1, "sprocket"), (2, "gear")]
    finally:
        await engine.dispose()


async def _assert_isolated(factory: DatabaseFactory) -> None:
    first, second = await factory(), await factory()
    assert make_url(first).database != make_url(second).database

    first_engine = create_async_engine(first, poolclass=NullPool)
    second_engine = create_async_engine(second, poolclass=NullPool)
    try:
        async with first_engine.begin() as conn:
            await conn.execute(text("CREATE TABLE only_in_first (id INTEGER PRIMARY KEY)"))
        async with first_engine.connect() as conn:
            assert await conn.run_sync(_table_names) == ["only_in_first"]
        async with second_engine.connect() as conn:
            assert await conn.run_sync(_table_names) == []
    finally:
        await first_engine.dispose()
        await second_engine.dispose()


async def _assert_create_and_drop(admin_url: str) -> None:
    name = unique_database_name()
    url = await create_database(admin_url, name)
    try:
        assert make_url(url).database == name
        assert await database_exists(admin_url, name)
        # A connection left open must not stop the drop.
        engine = create_async_engine(url, poolclass=NullPool)
        conn = await engine.connect()
        try:
            await conn.execute(text("SELECT 1"))
            await drop_database(admin_url, name)
        finally:
            await conn.invalidate()
            await engine.dispose()
        assert not await database_exists(admin_url, name)
    finally:
        await drop_database(admin_url, name)


async def test_postgres_fresh_database_round_trip(postgres_url: str) -> None:
    assert make_url(postgres_url).drivername == "postgresql+asyncpg"
    await _assert_round_trip(postgres_url)


async def test_postgres_fresh_databases_are_isolated(
    postgres_database_factory: DatabaseFactory,
) -> None:
    await _assert_isolated(postgres_database_factory)


async def test_postgres_create_and_drop_database(postgres_admin_url: str) -> None:
    await _assert_create_and_drop(postgres_admin_url)


async def test_mariadb_fresh_database_round_trip(mariadb_url: str) -> None:
    assert make_url(mariadb_url).drivername == "mysql+asyncmy"
    await _assert_round_trip(mariadb_url)


async def test_mariadb_fresh_databases_are_isolated(
    mariadb_database_factory: DatabaseFactory,
) -> None:
    await _assert_isolated(mariadb_database_factory)


async def test_mariadb_create_and_drop_database(mariadb_admin_url: str) -> None:
    await _assert_create_and_drop(mariadb_admin_url)
