"""Regeneration is deterministic and never destroys the user's code."""

from __future__ import annotations

import shutil
from pathlib import Path

from support.project import SHOP, generate, python, tree

SPEC_V1 = """\
name: demo
services:
  library:
    entities:
      Author:
        fields:
          name: {type: string, max_length: 100, unique: true}
      Book:
        fields:
          title: {type: string, max_length: 200, searchable: true}
          author: {type: relation, to: Author}
"""

# v2 adds a field with a default, an index and a new entity, and drops nothing.
SPEC_V2 = (
    SPEC_V1.replace(
        "          author: {type: relation, to: Author}\n",
        "          author: {type: relation, to: Author}\n"
        "          pages: {type: integer, min: 1, default: 100, indexed: true}\n",
    )
    + """\
      Shelf:
        fields:
          label: {type: string, max_length: 20}
"""
)

HOOK = '''\
"""Hooks for Book, edited by the user."""

from typing import Any

from fastapi import Request


async def before_create(data: dict[str, Any], request: Request) -> dict[str, Any]:
    return {**data, "title": " ".join(data["title"].split())}


async def after_create(item: dict[str, Any], request: Request) -> None:
    pass


async def before_update(id: Any, changes: dict[str, Any], request: Request) -> dict[str, Any]:
    return changes


async def after_update(item: dict[str, Any], request: Request) -> None:
    pass


async def before_delete(id: Any, request: Request) -> None:
    pass


async def after_delete(id: Any, request: Request) -> None:
    pass
'''

ROUTES = '''\
"""Custom routes, edited by the user."""

from fastapi import APIRouter

from microforge.runtime.query import parse_list_query
from microforge.runtime.service_app import Repositories
from library_service.generated import resources


def router(repos: Repositories) -> APIRouter:
    api = APIRouter(tags=["custom"])

    @api.get("/stats")
    async def stats() -> dict[str, int]:
        page = await repos["Book"].list(parse_list_query({}, resources.books))
        return {"books": page["total"]}

    return api
'''

USER_TEST = '''\
"""The user's own tests."""

import httpx
import pytest

from .conftest import create_book

pytestmark = pytest.mark.anyio


async def test_hook_and_custom_route(client: httpx.AsyncClient) -> None:
    book = await create_book(client, title="  Dune   Messiah ")
    assert book["title"] == "Dune Messiah"
    author = (await client.get(f"/authors/{book['author_id']}")).json()
    defaulted = await client.post("/books", json={"title": "Children", "author_id": author["id"]})
    assert defaulted.json()["pages"] == 100
    assert (await client.get("/stats")).json() == {"books": 2}
'''


def test_same_spec_gives_a_byte_identical_tree(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    generate(SHOP, first)
    generate(SHOP, second)
    assert tree(first) == tree(second)
    again = generate(SHOP, first)
    assert again.written == []
    assert again.migrations == {}
    assert tree(first) == tree(second)


def test_user_code_survives_a_spec_change_and_still_runs(tmp_path: Path) -> None:
    spec = tmp_path / "demo.yaml"
    out = tmp_path / "demo"
    spec.write_text(SPEC_V1)
    generate(spec, out)
    service = out / "services" / "library"
    pkg = service / "library_service"
    db = {"LIBRARY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'library.db'}"}
    migrated = python(["-m", "alembic", "upgrade", "head"], service, db)
    assert migrated.returncode == 0, migrated.stderr

    (pkg / "custom" / "hooks" / "books.py").write_text(HOOK)
    (pkg / "custom" / "routes.py").write_text(ROUTES)
    (service / "tests" / "test_custom.py").write_text(USER_TEST)
    main_py = (pkg / "main.py").read_text() + "\n# the user's note\n"
    (pkg / "main.py").write_text(main_py)
    # A user edit inside generated/ is overwritten: that is the contract.
    (pkg / "generated" / "schemas.py").write_text("broken = True\n")

    spec.write_text(SPEC_V2)
    report = generate(spec, out)

    assert (pkg / "custom" / "hooks" / "books.py").read_text() == HOOK
    assert (pkg / "custom" / "routes.py").read_text() == ROUTES
    assert (service / "tests" / "test_custom.py").read_text() == USER_TEST
    assert (pkg / "main.py").read_text() == main_py
    assert "broken" not in (pkg / "generated" / "schemas.py").read_text()
    assert (pkg / "custom" / "hooks" / "shelves.py").exists()  # new entity, new hook file
    assert "library_service/custom/hooks/books.py" in {
        Path(k).as_posix()[len("services/library/") :] for k in report.kept
    }
    assert report.migrations["library"] == [
        "create table shelves",
        "books: add column pages",
        "books: create index ix_books_pages",
    ]
    versions = sorted(p.name for p in (service / "migrations" / "versions").glob("*.py"))
    assert versions == ["0001_initial.py", "0002_spec_change.py"]

    upgraded = python(["-m", "alembic", "upgrade", "head"], service, db)
    assert upgraded.returncode == 0, upgraded.stderr
    tests = python(["-m", "pytest", "-q", "-p", "no:randomly"], service)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert (
        "test_hook_and_custom_route PASSED"
        in python(["-m", "pytest", "-v", "tests/test_custom.py"], service).stdout
    )


def test_removed_entities_lose_their_generated_files_but_keep_hooks(tmp_path: Path) -> None:
    spec = tmp_path / "demo.yaml"
    out = tmp_path / "demo"
    spec.write_text(SPEC_V2)
    generate(spec, out)
    spec.write_text(SPEC_V1)
    report = generate(spec, out)
    service = out / "services" / "library"
    assert not (service / "library_service" / "generated" / "routes" / "shelves.py").exists()
    assert not (service / "tests" / "generated" / "test_shelves.py").exists()
    assert (service / "library_service" / "custom" / "hooks" / "shelves.py").exists()
    assert "drop table shelves" in report.migrations["library"]


def test_migrations_upgrade_and_downgrade_with_data(tmp_path: Path) -> None:
    spec = tmp_path / "demo.yaml"
    out = tmp_path / "demo"
    spec.write_text(SPEC_V1)
    generate(spec, out)
    service = out / "services" / "library"
    db_file = tmp_path / "library.db"
    env = {"LIBRARY_DATABASE_URL": f"sqlite+aiosqlite:///{db_file}"}
    assert python(["-m", "alembic", "upgrade", "head"], service, env).returncode == 0
    import sqlite3

    with sqlite3.connect(db_file) as conn:
        conn.execute(
            "INSERT INTO authors (id, name, created_at, updated_at) "
            "VALUES ('a1', 'Herbert', '2026-01-01', '2026-01-01')"
        )
        conn.execute(
            "INSERT INTO books (id, title, author_id, created_at, updated_at) "
            "VALUES ('b1', 'Dune', 'a1', '2026-01-01', '2026-01-01')"
        )
    spec.write_text(SPEC_V2)
    generate(spec, out)
    result = python(["-m", "alembic", "upgrade", "head"], service, env)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("SELECT pages FROM books").fetchall() == [(100,)]
    down = python(["-m", "alembic", "downgrade", "base"], service, env)
    assert down.returncode == 0, down.stderr
    with sqlite3.connect(db_file) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"alembic_version"}


def test_copying_a_project_elsewhere_keeps_it_working(tmp_path: Path) -> None:
    out = tmp_path / "shop"
    generate(SHOP, out)
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    assert generate(moved / "microforge.yaml", moved).written == []
