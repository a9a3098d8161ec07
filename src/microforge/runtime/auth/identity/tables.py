"""The identity service's own tables, next to the user entity's table.

The generator renders the same layout into the identity service's generated ``tables.py``
(templates/service/identity_tables.j2, so its migrations own the tables) and hands them to
the runtime as an ``IdentityTables``. ``build_identity_tables`` is that layout for the
runtime's own tests; tests/generator/test_identity_tables.py holds the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ...types import UTCDateTime

CREDENTIALS = "auth_credentials"
REFRESH_TOKENS = "auth_refresh_tokens"
API_KEYS = "auth_api_keys"
LOGIN_ATTEMPTS = "auth_login_attempts"


@dataclass(frozen=True)
class IdentityTables:
    """The Table objects the identity endpoints work on."""

    users: sa.Table
    credentials: sa.Table
    refresh_tokens: sa.Table
    api_keys: sa.Table
    login_attempts: sa.Table


def build_identity_tables(metadata: sa.MetaData, users: sa.Table) -> IdentityTables:
    """Add the four ``auth_*`` tables (the layout above) to ``metadata``."""
    target = f"{users.name}.id"
    credentials = sa.Table(
        CREDENTIALS,
        metadata,
        sa.Column(
            "user_id",
            sa.Uuid(),
            sa.ForeignKey(target, name=f"fk_{CREDENTIALS}_user_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("password_changed_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    refresh_tokens = sa.Table(
        REFRESH_TOKENS,
        metadata,
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column(
            "user_id",
            sa.Uuid(),
            sa.ForeignKey(target, name=f"fk_{REFRESH_TOKENS}_user_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("token_hash", name=f"uq_{REFRESH_TOKENS}_token_hash"),
        sa.Index(f"ix_{REFRESH_TOKENS}_family_id", "family_id"),
        sa.Index(f"ix_{REFRESH_TOKENS}_user_id", "user_id"),
    )
    api_keys = sa.Table(
        API_KEYS,
        metadata,
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("prefix", name=f"uq_{API_KEYS}_prefix"),
    )
    login_attempts = sa.Table(
        LOGIN_ATTEMPTS,
        metadata,
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", UTCDateTime(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
    )
    return IdentityTables(
        users=users,
        credentials=credentials,
        refresh_tokens=refresh_tokens,
        api_keys=api_keys,
        login_attempts=login_attempts,
    )
