"""Row versions in generated projects: the column, its migration for projects generated
before it existed (rows already there get version 1), and the If-Match contract in the
OpenAPI document."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from support.project import generate, python

from microforge.runtime.types import UTCDateTime, utcnow

SPEC = """\
name: demo
services:
  library:
    entities:
      Author:
        fields:
          name: {type: string, max_length: 100, unique: true}
      Book:
        if_match: required
        soft_delete: true
        fields:
          title: {type: string, max_length: 200}
          author: {type: relation, to: Author}
"""

# The version column as tables.py, the snapshot and the initial migration spell it.
VERSION_COLUMN = re.compile(
    r'\n[ \t]*sa\.Column\(\s*"version",.*?If-Match compares it\.",?\s*\),', re.S
)

# The tables as a project generated before row versions holds them.
old = sa.MetaData()
authors = sa.Table(
    "authors",
    old,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)
books = sa.Table(
    "books",
    old,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("author_id", sa.Uuid(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("deleted_at", UTCDateTime(), nullable=True),
)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path]:
    spec = tmp_path / "demo.yaml"
    spec.write_text(SPEC)
    generate(spec, tmp_path / "demo")
    return spec, tmp_path / "demo" / "services" / "library"


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind (the servers' from the root conftest)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'library.db'}"
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


async def test_regenerating_an_older_project_gives_its_rows_version_1(
    project: tuple[Path, Path], database_url: str
) -> None:
    spec, service = project
    # Make the project what an older microforge wrote: no version columns anywhere.
    migrations = [
        *service.glob("migrations/versions/*.py"),
        service / "migrations/schema_snapshot.py",
    ]
    for path in migrations:
        text = path.read_text()
        older = VERSION_COLUMN.sub("", text)
        assert older.count('"version"') == 0 < text.count('"version"'), path
        path.write_text(older)
    env = {"LIBRARY_DATABASE_URL": database_url}
    up = python(["-m", "alembic", "upgrade", "head"], service, env)
    assert up.returncode == 0, up.stderr[-2000:]
    engine = create_async_engine(database_url)
    try:
        author, now = uuid.uuid4(), utcnow()
        async with engine.begin() as conn:
            await conn.execute(
                authors.insert().values(id=author, name="Herbert", created_at=now, updated_at=now)
            )
            await conn.execute(
                books.insert().values(
                    id=uuid.uuid4(), title="Dune", author_id=author, created_at=now, updated_at=now
                )
            )

        report = generate(spec, service.parents[1])
        assert "authors: add column version" in report.migrations["library"]
        assert "books: add column version" in report.migrations["library"]
        up = python(["-m", "alembic", "upgrade", "head"], service, env)
        assert up.returncode == 0, up.stderr[-2000:]
        async with engine.connect() as conn:
            for table in ("authors", "books"):
                versions = (await conn.execute(sa.text(f"SELECT version FROM {table}"))).all()
                assert versions == [(1,)], table
        down = python(["-m", "alembic", "downgrade", "-1"], service, env)
        assert down.returncode == 0, down.stderr[-2000:]
        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda sync: [c["name"] for c in sa.inspect(sync).get_columns("books")]
            )
        assert "version" not in columns
    finally:
        await engine.dispose()


def test_the_openapi_document_describes_if_match(project: tuple[Path, Path]) -> None:
    _, service = project
    script = "import json\nfrom library_service.main import app\nprint(json.dumps(app.openapi()))"
    result = python(["-c", script], service)
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(result.stdout)
    for collection, required in (("authors", False), ("books", True)):
        for method in ("patch", "delete"):
            operation = document["paths"][f"/{collection}/{{id}}"][method]
            header = next(p for p in operation["parameters"] if p["in"] == "header")
            assert (header["name"], header["required"]) == ("If-Match", required)
            assert {"400", "412"} <= set(operation["responses"])
            assert ("428" in operation["responses"]) is required
    schemas = document["components"]["schemas"]
    assert schemas["Book"]["properties"]["version"]["type"] == "integer"
    assert "version" in schemas["Book"]["required"]
    assert "version" not in schemas["BookCreate"]["properties"]
    assert "version" not in schemas["BookUpdate"]["properties"]
