"""Generated code is a product: lint-clean, formatted, type-checked, and its tests pass
on SQLite, PostgreSQL and MariaDB, with migrations that apply on each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from ruff.__main__ import find_ruff_bin
from support.project import SHOP, generate, python, run

DatabaseFactory = Callable[[], Awaitable[str]]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shop")
    generate(SHOP, out)
    return out


def services(project: Path) -> list[Path]:
    return sorted(p for p in (project / "services").iterdir() if p.is_dir())


def test_ruff_finds_nothing_to_fix(shop: Path) -> None:
    ruff = find_ruff_bin()
    for service in services(shop):
        check = run([ruff, "check", "."], service)
        assert check.returncode == 0, check.stdout + check.stderr
        fmt = run([ruff, "format", "--check", "."], service)
        assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict_passes(shop: Path, tmp_path: Path) -> None:
    for service in services(shop):
        result = python(["-m", "mypy", "--cache-dir", str(tmp_path / "mypy"), "."], service)
        assert result.returncode == 0, f"{service.name}:\n{result.stdout}{result.stderr}"


def test_generated_tests_pass_on_sqlite(shop: Path) -> None:
    for service in services(shop):
        result = python(["-m", "pytest", "-q"], service)
        assert result.returncode == 0, f"{service.name}:\n{result.stdout[-3000:]}"
        assert " passed" in result.stdout
        assert "skipped" not in result.stdout


async def _migrate_and_test(shop: Path, new_database: DatabaseFactory) -> None:
    for service in services(shop):
        prefix = service.name.upper()
        env = {f"{prefix}_DATABASE_URL": await new_database()}
        up = python(["-m", "alembic", "upgrade", "head"], service, env)
        assert up.returncode == 0, f"{service.name}: {up.stderr[-2000:]}"
        down = python(["-m", "alembic", "downgrade", "base"], service, env)
        assert down.returncode == 0, f"{service.name}: {down.stderr[-2000:]}"
        again = python(["-m", "alembic", "upgrade", "head"], service, env)
        assert again.returncode == 0, f"{service.name}: {again.stderr[-2000:]}"
        test_env = {f"{prefix}_TEST_DATABASE_URL": await new_database()}
        tests = python(["-m", "pytest", "-q", "-x"], service, test_env)
        assert tests.returncode == 0, f"{service.name}:\n{tests.stdout[-3000:]}"


async def test_migrations_and_generated_tests_on_postgres(
    shop: Path, postgres_database_factory: DatabaseFactory
) -> None:
    await _migrate_and_test(shop, postgres_database_factory)


async def test_migrations_and_generated_tests_on_mariadb(
    shop: Path, mariadb_database_factory: DatabaseFactory
) -> None:
    await _migrate_and_test(shop, mariadb_database_factory)
