"""API keys for machine clients: `mf_<prefix>_<secret>`, stored as prefix + SHA-256.

The prefix is public and indexed, so a key is found with one lookup; the secret is 256
random bits, so a plain SHA-256 digest (unlike a password) cannot be brute-forced, and
checking it costs microseconds instead of an Argon2 run per token request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...ids import uuid7
from .tables import IdentityTables

Row = dict[str, Any]
API_KEY_PREFIX_BYTES = 6  # 12 hex characters: the public, indexed part of a key
API_KEY = re.compile(r"mf_([0-9a-f]{12})_([A-Za-z0-9_-]{20,200})")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


async def insert_api_key(
    engine: AsyncEngine,
    tables: IdentityTables,
    *,
    name: str,
    roles: Iterable[str],
    now: dt.datetime,
    tenant: str | None = None,
    created_by: uuid.UUID | None = None,
    expires_at: dt.datetime | None = None,
) -> Row:
    """Store a new key; the returned row carries the whole key under "key" (shown once)."""
    for attempt in range(3):
        prefix = secrets.token_hex(API_KEY_PREFIX_BYTES)
        secret = secrets.token_urlsafe(32)
        row: Row = {
            "id": uuid7(),
            "name": name,
            "prefix": prefix,
            "key_hash": digest(secret),
            "roles": sorted(set(roles)),
            "tenant_id": tenant,
            "created_by": created_by,
            "created_at": now,
            "expires_at": expires_at,
            "revoked_at": None,
            "last_used_at": None,
        }
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.insert(tables.api_keys).values(row))
            return {**row, "key": f"mf_{prefix}_{secret}"}
        except IntegrityError:
            if attempt == 2:  # three 48-bit prefix collisions in a row: not chance
                raise
    raise AssertionError("unreachable")


async def find_api_key(
    conn: AsyncConnection, tables: IdentityTables, api_key: str, now: dt.datetime
) -> Row | None:
    """The stored row of a key that is valid now: known, matching, not revoked or expired."""
    match = API_KEY.fullmatch(api_key)
    if match is None:
        return None
    prefix, secret = match.groups()
    keys = tables.api_keys
    found = (await conn.execute(sa.select(keys).where(keys.c.prefix == prefix))).mappings().first()
    if (
        found is None
        or not hmac.compare_digest(digest(secret), found["key_hash"])
        or found["revoked_at"] is not None
        or (found["expires_at"] is not None and found["expires_at"] <= now)
    ):
        return None
    return dict(found)


async def provision_client_key(
    engine: AsyncEngine,
    tables: IdentityTables,
    name: str,
    roles: Iterable[str],
    current: str | None,
    now: dt.datetime,
) -> str:
    """A service's own key: `current` while it is valid and holds exactly `roles`, else a
    new one (and `current` revoked, so a key whose roles the spec took away stops working).
    """
    wanted = sorted(set(roles))
    async with engine.begin() as conn:
        found = await find_api_key(conn, tables, current, now) if current else None
        if current is not None and found is not None and sorted(found["roles"]) == wanted:
            return current
        if found is not None:
            keys = tables.api_keys
            await conn.execute(
                sa.update(keys).where(keys.c.id == found["id"]).values(revoked_at=now)
            )
    created = await insert_api_key(engine, tables, name=f"service:{name}", roles=wanted, now=now)
    key: str = created["key"]
    return key
