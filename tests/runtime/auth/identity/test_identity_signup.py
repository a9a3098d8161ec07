"""POST /auth/signup: on and off, the password policy, duplicates, mass assignment, tenants."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from support.identity_app import PASSWORD, Identity, StartIdentity, bearer
from support.runtime_api import assert_problem


async def _user_count(identity: Identity) -> int:
    async with identity.engine.connect() as conn:
        count: int = (
            await conn.execute(sa.select(sa.func.count()).select_from(identity.tables.users))
        ).scalar_one()
    return count


async def test_signup_off_has_no_route(start_identity: StartIdentity) -> None:
    async with start_identity(signup=False) as identity:
        response = await identity.client.post(
            "/auth/signup",
            json={"email": "a@example.com", "display_name": "A", "password": PASSWORD},
        )
        assert_problem(response, 404)
        schema = (await identity.client.get("/openapi.json")).json()
        assert "/auth/signup" not in schema["paths"]
        assert "/auth/login" in schema["paths"]
        assert await _user_count(identity) == 0


async def test_signup_is_documented_with_a_password(identity: Identity) -> None:
    schema = (await identity.client.get("/openapi.json")).json()
    body = schema["paths"]["/auth/signup"]["post"]["requestBody"]["content"]["application/json"]
    model = schema["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[1]]
    assert {"email", "display_name", "password"} <= set(model["properties"])
    assert model["additionalProperties"] is False
    assert model["examples"][0]["password"]


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short pw", "at least 12"),
        ("x" * 11, "at least 12"),
        (" " * 20, "whitespace"),
        ("\t\n " * 5, "whitespace"),
        ("p" * 1025, "at most 1024"),
    ],
)
async def test_weak_passwords_are_refused(identity: Identity, password: str, reason: str) -> None:
    response = await identity.client.post(
        "/auth/signup",
        json={"email": "weak@example.com", "display_name": "W", "password": password},
    )
    body = assert_problem(response, 422)
    assert body["field"] == "password"
    assert reason in body["detail"]
    assert password not in response.text  # never echoed back
    assert await _user_count(identity) == 0


async def test_boundary_passwords_are_accepted(identity: Identity) -> None:
    for password in ("x" * 12, "é" * 1024):
        response = await identity.client.post(
            "/auth/signup",
            json={"email": identity.fresh_email(), "display_name": "B", "password": password},
        )
        assert response.status_code == 201, response.text


async def test_a_taken_email_gets_a_generic_conflict(identity: Identity) -> None:
    await identity.signup("taken@example.com")
    for email in ("taken@example.com", "TAKEN@example.com"):
        response = await identity.client.post(
            "/auth/signup",
            json={"email": email, "display_name": "Other", "password": "another passphrase"},
        )
        body = assert_problem(response, 409)
        assert body["detail"] == "Cannot sign up with these details."
        assert "taken" not in response.text
    assert await _user_count(identity) == 1
    # The first account is untouched: its password still works, the second one does not.
    assert (await identity.login("taken@example.com")).status_code == 200
    assert_problem(await identity.login("taken@example.com", "another passphrase"), 401)


@pytest.mark.parametrize(
    "extra",
    [
        {"roles": ["admin"]},
        {"tenant_id": "someone-elses-tenant"},
        {"disabled": False},
        {"id": "0190a6e4-1c5b-7cc0-8d1e-0123456789ab"},
        {"password_hash": "$argon2id$..."},
    ],
)
async def test_clients_cannot_assign_privileged_fields(
    identity: Identity, extra: dict[str, Any]
) -> None:
    response = await identity.client.post(
        "/auth/signup",
        json={"email": "mass@example.com", "display_name": "M", "password": PASSWORD, **extra},
    )
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == next(iter(extra))
    assert await _user_count(identity) == 0


async def test_entity_fields_new_users_may_not_write_are_refused(identity: Identity) -> None:
    response = await identity.client.post(
        "/auth/signup",
        json={
            "email": "v@example.com",
            "display_name": "V",
            "password": PASSWORD,
            "verified": True,
        },
    )
    assert assert_problem(response, 403)["field"] == "verified"
    assert await _user_count(identity) == 0


async def test_signup_roles_come_from_the_configuration(identity: Identity) -> None:
    signed_up = await identity.signup()
    principal = await identity.verifier.verify(signed_up["access_token"])
    assert principal.roles == {"customer"}
    assert principal.tenant is None
    async with identity.engine.connect() as conn:
        stored = (await conn.execute(sa.select(identity.tables.credentials))).mappings().one()
    assert stored["roles"] == ["customer"]
    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in repr(await identity.all_rows())


async def test_each_signup_starts_a_tenant(start_identity: StartIdentity) -> None:
    async with start_identity(tenancy=True) as identity:
        first, second = await identity.signup(), await identity.signup()
        tenants = [
            (await identity.verifier.verify(s["access_token"])).tenant for s in (first, second)
        ]
        assert all(tenants)
        assert tenants[0] != tenants[1]
        assert [first["user"]["tenant_id"], second["user"]["tenant_id"]] == tenants
        me = await identity.client.get("/auth/me", headers=bearer(first["access_token"]))
        assert me.json()["tenant"] == tenants[0]
        # Refreshed tokens keep the tenant.
        again = await identity.client.post(
            "/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert (await identity.verifier.verify(again.json()["access_token"])).tenant == tenants[0]
