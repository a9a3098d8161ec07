"""API keys: created by admins, shown once, hashed at rest, traded for client tokens."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from support.identity_app import Identity, StartIdentity, bearer
from support.runtime_api import assert_problem


async def _create(identity: Identity, token: str, roles: list[str], **extra: Any) -> dict[str, Any]:
    response = await identity.client.post(
        "/auth/api-keys", json={"name": "job", "roles": roles, **extra}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created: dict[str, Any] = response.json()
    return created


async def _client_token(identity: Identity, key: str) -> Any:
    return await identity.client.post(
        "/auth/token", data={"grant_type": "client_credentials", "client_secret": key}
    )


async def test_a_key_is_shown_once_and_never_stored(identity: Identity) -> None:
    admin = await identity.user_with_roles({"admin"})
    created = await _create(identity, admin["access_token"], ["reporting", "staff"])
    key = created.pop("key")
    prefix = created["prefix"]
    assert key.startswith(f"mf_{prefix}_")
    secret = key.removeprefix(f"mf_{prefix}_")
    assert created["roles"] == ["reporting", "staff"]
    assert created["created_by"] == str(admin["user"]["id"])
    assert created["revoked_at"] is None
    assert created["last_used_at"] is None

    listed = await identity.client.get("/auth/api-keys", headers=bearer(admin["access_token"]))
    assert listed.status_code == 200
    assert listed.json() == {"items": [created], "total": 1}
    assert secret not in listed.text

    stored = repr(await identity.all_rows())
    assert secret not in stored
    assert key not in stored
    assert hashlib.sha256(secret.encode()).hexdigest() in stored  # only the digest

    assert (await _client_token(identity, key)).status_code == 200
    used = await identity.client.get("/auth/api-keys", headers=bearer(admin["access_token"]))
    assert used.json()["items"][0]["last_used_at"] is not None


async def test_the_token_endpoint_takes_json_too(identity: Identity) -> None:
    admin = await identity.user_with_roles({"admin"})
    key = (await _create(identity, admin["access_token"], ["staff"]))["key"]
    response = await identity.client.post(
        "/auth/token", json={"grant_type": "client_credentials", "client_secret": key}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    principal = await identity.verifier.verify(body["access_token"])
    assert principal.kind == "client"
    assert principal.roles == {"staff"}
    me = await identity.client.get("/auth/me", headers=bearer(body["access_token"]))
    assert me.json()["user"] is None
    assert me.json()["kind"] == "client"


async def test_keys_that_must_not_work(identity: Identity) -> None:
    admin = await identity.user_with_roles({"admin"})
    token = admin["access_token"]
    key = (await _create(identity, token, ["staff"]))["key"]
    prefix = key.split("_")[1]
    expiring = (await _create(identity, token, ["staff"], expires_in_days=1))["key"]
    assert (await _client_token(identity, expiring)).status_code == 200
    identity.clock.advance(86400 + 1)
    candidates = [
        expiring,
        key[:-1] + ("A" if key[-1] != "A" else "B"),  # right prefix, wrong secret
        f"mf_{prefix}_{'x' * 43}",
        "mf_000000000000_" + "y" * 43,
        "not a key",
        key + " ",
    ]
    for candidate in candidates:
        refused = await _client_token(identity, candidate)
        body = assert_problem(refused, 401)
        assert body["error"] == "invalid_client"
        assert body["detail"] == "Invalid client credentials."
        assert candidate not in refused.text
    assert (await _client_token(identity, key)).status_code == 200


async def test_revoking(identity: Identity) -> None:
    admin = await identity.user_with_roles({"admin"})
    auth = bearer(admin["access_token"])
    created = await _create(identity, admin["access_token"], ["staff"])
    for _ in range(2):  # revoking twice is fine
        response = await identity.client.delete(f"/auth/api-keys/{created['id']}", headers=auth)
        assert response.status_code == 204
    assert_problem(await _client_token(identity, created["key"]), 401)
    listed = (await identity.client.get("/auth/api-keys", headers=auth)).json()
    assert listed["items"][0]["revoked_at"] is not None
    for missing in ("0190a6e4-1c5b-7cc0-8d1e-0123456789ab", "not-a-uuid"):
        assert_problem(await identity.client.delete(f"/auth/api-keys/{missing}", headers=auth), 404)


async def test_roles_must_be_known(identity: Identity) -> None:
    admin = await identity.user_with_roles({"admin"})
    response = await identity.client.post(
        "/auth/api-keys",
        json={"name": "job", "roles": ["staff", "superuser"]},
        headers=bearer(admin["access_token"]),
    )
    body = assert_problem(response, 422)
    assert body["field"] == "roles"
    assert "superuser" in body["detail"]


async def test_only_admins_manage_keys(identity: Identity) -> None:
    customer = await identity.signup()
    staff = await identity.user_with_roles({"staff"})
    for headers in ({}, bearer(customer["access_token"]), bearer(staff["access_token"])):
        expected = 401 if not headers else 403
        create = await identity.client.post(
            "/auth/api-keys", json={"name": "x", "roles": []}, headers=headers
        )
        assert_problem(create, expected)
        assert_problem(await identity.client.get("/auth/api-keys", headers=headers), expected)
        revoke = await identity.client.delete(
            "/auth/api-keys/0190a6e4-1c5b-7cc0-8d1e-0123456789ab", headers=headers
        )
        assert_problem(revoke, expected)


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"data": {"grant_type": "password", "client_secret": "x"}}, 400, "unsupported_grant_type"),
        ({"data": {"grant_type": "client_credentials"}}, 400, "invalid_request"),
        (
            {"json": {"grant_type": "client_credentials", "client_secret": 5}},
            400,
            "invalid_request",
        ),
        ({"json": ["client_credentials"]}, 400, "invalid_request"),
        (
            {"content": b"{", "headers": {"content-type": "application/json"}},
            400,
            "invalid_request",
        ),
        (
            {
                "content": b"grant_type=client_credentials&client_secret=a&client_secret=b",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
            400,
            "invalid_request",
        ),
        ({"content": b"x", "headers": {"content-type": "text/plain"}}, 415, "invalid_request"),
        (
            {
                "content": b"client_secret=" + b"a" * 9000,
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
            413,
            "invalid_request",
        ),
    ],
)
async def test_malformed_token_requests(
    identity: Identity, kwargs: dict[str, Any], status: int, error: str
) -> None:
    response = await identity.client.post("/auth/token", **kwargs)
    assert assert_problem(response, status)["error"] == error


async def test_jwks_endpoint(identity: Identity) -> None:
    response = await identity.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    keys = response.json()["keys"]
    assert [k["kid"] for k in keys] == [k.kid for k in identity.keys.keys]
    assert all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and "d" not in k for k in keys)


async def test_keys_belong_to_the_admins_tenant(start_identity: StartIdentity) -> None:
    async with start_identity(tenancy=True) as identity:
        first = await identity.user_with_roles({"admin"}, tenant="tenant-a")
        second = await identity.user_with_roles({"admin"}, tenant="tenant-b")
        created = await _create(identity, first["access_token"], ["staff"])
        assert created["tenant"] == "tenant-a"
        token = (await _client_token(identity, created["key"])).json()["access_token"]
        assert (await identity.verifier.verify(token)).tenant == "tenant-a"
        other = bearer(second["access_token"])
        assert (await identity.client.get("/auth/api-keys", headers=other)).json()["total"] == 0
        revoke = await identity.client.delete(f"/auth/api-keys/{created['id']}", headers=other)
        assert_problem(revoke, 404)
        assert (await _client_token(identity, created["key"])).status_code == 200
