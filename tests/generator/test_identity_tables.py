"""The identity tables exist twice: rendered into the identity service's tables.py (so its
migrations own them) and built by the runtime for its own tests. They must not drift."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData
from support.project import SHOP, generate

from microforge.generator.schema_diff import describe, diff_metadata, load_metadata
from microforge.runtime.auth.identity.tables import build_identity_tables

AUTH_TABLES = ("auth_credentials", "auth_refresh_tokens", "auth_api_keys", "auth_login_attempts")


def test_generated_identity_tables_match_the_runtime_layout(tmp_path: Path) -> None:
    generate(SHOP, tmp_path)
    tables = tmp_path / "services/identity/identity_service/generated/tables.py"
    generated = load_metadata(tables.read_text(), str(tables))
    assert set(AUTH_TABLES) <= set(generated.tables)

    rendered = MetaData()
    for name in ("users", *AUTH_TABLES):
        generated.tables[name].to_metadata(rendered)
    built = MetaData()
    users = generated.tables["users"].to_metadata(built)
    build_identity_tables(built, users)

    difference = diff_metadata(rendered, built)
    assert describe(difference.upgrade) == []
