"""Refresh tokens: rotation chains, reuse detection, expiry, logout, storage at rest."""

from __future__ import annotations

import asyncio
import hashlib

import sqlalchemy as sa
from support.identity_app import Identity
from support.runtime_api import assert_problem


async def _refresh(identity: Identity, token: str) -> dict[str, str] | None:
    response = await identity.client.post("/auth/refresh", json={"refresh_token": token})
    if response.status_code == 401:
        assert_problem(response, 401)
        return None
    assert response.status_code == 200, response.text
    pair: dict[str, str] = response.json()
    return pair


async def test_a_rotation_chain_and_reuse_from_its_middle(identity: Identity) -> None:
    signed_up = await identity.signup()
    chain = [signed_up["refresh_token"]]
    for _ in range(3):
        pair = await _refresh(identity, chain[-1])
        assert pair is not None
        chain.append(pair["refresh_token"])
    assert len(set(chain)) == len(chain)
    # Reusing any spent token ends the family: its latest token no longer works.
    assert await _refresh(identity, chain[1]) is None
    assert await _refresh(identity, chain[-1]) is None
    tokens = identity.tables.refresh_tokens
    async with identity.engine.connect() as conn:
        rows = (await conn.execute(sa.select(tokens))).mappings().all()
    assert len(rows) == 4
    assert len({row["family_id"] for row in rows}) == 1
    assert all(row["revoked_at"] is not None for row in rows)
    assert sum(row["used_at"] is None for row in rows) == 1


async def test_concurrent_use_of_one_token_ends_the_family(identity_on: Identity) -> None:
    # On every database: the loser's conditional UPDATE finds the token spent.
    identity = identity_on
    token = (await identity.signup())["refresh_token"]
    results = await asyncio.gather(_refresh(identity, token), _refresh(identity, token))
    winners = [pair for pair in results if pair is not None]
    assert len(winners) == 1
    assert await _refresh(identity, winners[0]["refresh_token"]) is None


async def test_refresh_tokens_expire(identity: Identity) -> None:
    token = (await identity.signup())["refresh_token"]
    identity.clock.advance(identity.config.refresh_ttl - 10)
    pair = await _refresh(identity, token)
    assert pair is not None
    # Each rotation grants a full lifetime from its own moment.
    identity.clock.advance(identity.config.refresh_ttl - 10)
    newer = await _refresh(identity, pair["refresh_token"])
    assert newer is not None
    identity.clock.advance(identity.config.refresh_ttl + 1)
    assert await _refresh(identity, newer["refresh_token"]) is None


async def test_unknown_and_malformed_refresh_tokens(identity: Identity) -> None:
    await identity.signup()
    assert await _refresh(identity, "x" * 43) is None
    empty = await identity.client.post("/auth/refresh", json={"refresh_token": ""})
    assert_problem(empty, 422)
    assert_problem(await identity.client.post("/auth/refresh", json={}), 422)


async def test_logout_is_idempotent_and_reveals_nothing(identity: Identity) -> None:
    token = (await identity.signup())["refresh_token"]
    for candidate in (token, token, "never issued"):
        response = await identity.client.post("/auth/logout", json={"refresh_token": candidate})
        assert response.status_code == 204
        assert response.content == b""
    assert await _refresh(identity, token) is None


async def test_refresh_tokens_are_stored_as_digests(identity: Identity) -> None:
    signed_up = await identity.signup()
    pair = await _refresh(identity, signed_up["refresh_token"])
    assert pair is not None
    stored = repr(await identity.all_rows())
    for token in (signed_up["refresh_token"], pair["refresh_token"]):
        assert token not in stored
        assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert signed_up["access_token"] not in stored
