"""An identity service assembled from ``microforge.runtime.auth.identity`` by hand.

It mirrors what the generator writes for the identity service: a ``users`` entity table
(uuid ids, a unique ``email``), the ``auth_*`` tables of ``build_identity_tables``, the
router over a real KeyStore, and a TokenVerifier over the service's own JWKS in
``app.state.token_verifier``. The clock of the identity endpoints is a ``MovableClock``
so tests move time (throttle windows, refresh expiry) instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from microforge.runtime.auth.identity import (
    IdentityConfig,
    IdentityTables,
    build_identity_tables,
    create_user,
    identity_router,
)
from microforge.runtime.auth.keys import KeyStore
from microforge.runtime.auth.tokens import StaticJwks, TokenIssuer, TokenVerifier
from microforge.runtime.db import create_engine
from microforge.runtime.repository import Repository
from microforge.runtime.resource import Resource
from microforge.runtime.service_app import create_service_app
from microforge.runtime.types import UTCDateTime

ISSUER = "urn:microforge:shop:identity"
AUDIENCE = "urn:microforge:shop"
ROLES = frozenset({"admin", "staff", "customer", "reporting"})
PASSWORD = "a long enough passphrase"
CLIENT_IP = "198.51.100.7"


def identity_metadata() -> tuple[sa.MetaData, IdentityTables]:
    """A fresh MetaData with the users table (tenant_id included) and the auth tables."""
    metadata = sa.MetaData()
    users = sa.Table(
        "users",
        metadata,
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    return metadata, build_identity_tables(metadata, users)


class UserCreate(BaseModel):
    """The user entity's create schema, as schemas.py renders it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "someone@example.com", "display_name": "x"}]},
    )

    email: EmailStr
    display_name: str = Field(min_length=1, max_length=100)
    verified: bool = False


class MovableClock:
    """The identity endpoints' clock; ``advance`` moves it forward."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def default_config(clock: MovableClock, **overrides: Any) -> IdentityConfig:
    config = IdentityConfig(
        user_create_model=UserCreate,
        roles=ROLES,
        admin_roles=frozenset({"admin"}),
        signup=True,
        signup_roles=frozenset({"customer"}),
        signup_forbidden_fields=frozenset({"verified"}),
        access_ttl=900,
        refresh_ttl=3600,
        login_throttle_attempts=3,
        login_throttle_window=60,
        ip_throttle_factor=3,
        clock=clock,
    )
    return replace(config, **overrides)


@dataclass
class Identity:
    """A running identity service and what tests need to poke at it."""

    client: httpx.AsyncClient
    engine: AsyncEngine
    tables: IdentityTables
    config: IdentityConfig
    clock: MovableClock
    keys: KeyStore
    verifier: TokenVerifier
    _counter: list[int] = field(default_factory=lambda: [0])

    def fresh_email(self) -> str:
        self._counter[0] += 1
        return f"user{self._counter[0]}@example.com"

    async def signup(self, email: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"email": email or self.fresh_email(), "display_name": "Ann", "password": PASSWORD}
        response = await self.client.post("/auth/signup", json={**body, **fields})
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.client.post("/auth/login", json={"email": email, "password": password})

    async def tokens(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.login(email, password)
        assert response.status_code == 200, response.text
        pair: dict[str, Any] = response.json()
        return pair

    async def user_with_roles(self, roles: set[str], tenant: str | None = None) -> dict[str, Any]:
        """Create a user with ``roles`` (as the CLI does) and log them in."""
        email = self.fresh_email()
        user = await create_user(
            self.engine,
            self.tables,
            email,
            PASSWORD,
            roles,
            {"display_name": "Admin"},
            tenant=tenant,
            known_roles=self.config.roles,
        )
        return {"user": user, "email": email, **(await self.tokens(email))}

    async def all_rows(self) -> list[dict[str, Any]]:
        """Every row of every table, to look for secrets at rest."""
        rows: list[dict[str, Any]] = []
        async with self.engine.connect() as conn:
            for table in (
                self.tables.users,
                self.tables.credentials,
                self.tables.refresh_tokens,
                self.tables.api_keys,
                self.tables.login_attempts,
            ):
                rows.extend(dict(r) for r in (await conn.execute(sa.select(table))).mappings())
        return rows


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def running_identity(url: str, key_dir: Path, **overrides: Any) -> AsyncIterator[Identity]:
    """An identity service on the empty database ``url`` with keys in ``key_dir``."""
    clock = MovableClock()
    config = default_config(clock, **overrides)
    metadata, tables = identity_metadata()
    engine = create_engine(url, pool_size=5)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        keys = KeyStore.ensure(key_dir)
        issuer = TokenIssuer(keys, ISSUER, AUDIENCE, config.access_ttl)
        users_repo = Repository(engine, Resource("User", tables.users))
        router = identity_router(config, tables, engine, issuer, keys, users_repo)
        app = create_service_app(
            title="identity", version="0", description="", engine=engine, routers=[router]
        )
        verifier = TokenVerifier(StaticJwks(keys.jwks()), ISSUER, AUDIENCE)
        app.state.token_verifier = verifier
        transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://identity") as client:
            yield Identity(client, engine, tables, config, clock, keys, verifier)
    finally:
        await engine.dispose()


StartIdentity = Callable[..., AbstractAsyncContextManager[Identity]]
"""The ``start_identity`` fixture: ``async with start_identity(url=None, **config)``."""
