"""The identity service's core flows, on SQLite, PostgreSQL and MariaDB.

Sign up, log in, read /auth/me, rotate and reuse refresh tokens, log out, change the
password, throttle logins, disable a user, and use an API key: everything that writes
to the auth tables, so each database's SQL is exercised.
"""

from __future__ import annotations

from support.identity_app import AUDIENCE, ISSUER, PASSWORD, Identity, bearer
from support.runtime_api import assert_problem

from microforge.runtime.auth.tokens import StaticJwks, TokenVerifier


async def test_signup_login_me_and_refresh_rotation(identity_on: Identity) -> None:
    identity = identity_on
    signed_up = await identity.signup("New.Person@Example.com", display_name="New")
    user = signed_up["user"]
    assert user["email"] == "new.person@example.com"
    assert user["display_name"] == "New"
    assert signed_up["token_type"] == "Bearer"
    assert signed_up["expires_in"] == 900
    assert signed_up["refresh_expires_in"] == 3600

    me = await identity.client.get("/auth/me", headers=bearer(signed_up["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json() == {
        "id": user["id"],
        "kind": "user",
        "roles": ["customer"],
        "tenant": None,
        "user": user,
    }

    # Login is case-insensitive on every database; each login is a new session.
    pair = await identity.tokens("NEW.person@example.COM")
    rotated = await identity.client.post(
        "/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"
    second = rotated.json()
    assert second["refresh_token"] != pair["refresh_token"]
    principal = await identity.verifier.verify(second["access_token"])
    assert principal.subject == user["id"]
    assert principal.roles == {"customer"}

    # The spent token comes back: the whole family dies, including its newest token.
    reused = await identity.client.post(
        "/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert_problem(reused, 401)
    after = await identity.client.post(
        "/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert_problem(after, 401)
    assert after.json()["detail"] == reused.json()["detail"]

    # The signup session is another family and still works.
    other = await identity.client.post(
        "/auth/refresh", json={"refresh_token": signed_up["refresh_token"]}
    )
    assert other.status_code == 200, other.text


async def test_logout_ends_only_that_session(identity_on: Identity) -> None:
    identity = identity_on
    email = (await identity.signup())["user"]["email"]
    first, second = await identity.tokens(email), await identity.tokens(email)
    out = await identity.client.post("/auth/logout", json={"refresh_token": first["refresh_token"]})
    assert out.status_code == 204
    assert_problem(
        await identity.client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}),
        401,
    )
    kept = await identity.client.post(
        "/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert kept.status_code == 200


async def test_password_change_ends_every_session(identity_on: Identity) -> None:
    identity = identity_on
    signed_up = await identity.signup()
    email = signed_up["user"]["email"]
    sessions = [signed_up, await identity.tokens(email)]
    new_password = "another long passphrase"
    changed = await identity.client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=bearer(sessions[1]["access_token"]),
    )
    assert changed.status_code == 204, changed.text
    for session in sessions:
        refused = await identity.client.post(
            "/auth/refresh", json={"refresh_token": session["refresh_token"]}
        )
        assert_problem(refused, 401)
    assert_problem(await identity.login(email), 401)
    assert (await identity.login(email, new_password)).status_code == 200


async def test_login_throttle_locks_and_recovers(identity_on: Identity) -> None:
    identity = identity_on
    email = (await identity.signup())["user"]["email"]
    for _ in range(identity.config.login_throttle_attempts):
        assert_problem(await identity.login(email, "wrong password here"), 401)
    locked = await identity.login(email)  # even the right password waits
    body = assert_problem(locked, 429)
    assert "password" not in body["detail"].lower()
    assert 1 <= int(locked.headers["retry-after"]) <= identity.config.login_throttle_window
    identity.clock.advance(identity.config.login_throttle_window + 1)
    assert (await identity.login(email)).status_code == 200
    # Success resets the e-mail's count: the full allowance is back.
    for _ in range(identity.config.login_throttle_attempts - 1):
        assert_problem(await identity.login(email, "wrong password here"), 401)
    assert (await identity.login(email)).status_code == 200


async def test_disabled_user_cannot_log_in_or_refresh(identity_on: Identity) -> None:
    identity = identity_on
    admin = await identity.user_with_roles({"admin"})
    signed_up = await identity.signup()
    user_id, email = signed_up["user"]["id"], signed_up["user"]["email"]
    disabled = await identity.client.put(
        f"/auth/users/{user_id}/disabled",
        json={"disabled": True},
        headers=bearer(admin["access_token"]),
    )
    assert disabled.status_code == 200, disabled.text
    assert disabled.json() == {
        "id": user_id,
        "roles": ["customer"],
        "tenant": None,
        "disabled": True,
    }
    refused = await identity.login(email)
    unknown = await identity.login("nobody@example.com")
    assert_problem(refused, 401)
    assert refused.json() == unknown.json()
    assert_problem(
        await identity.client.post(
            "/auth/refresh", json={"refresh_token": signed_up["refresh_token"]}
        ),
        401,
    )
    enabled = await identity.client.put(
        f"/auth/users/{user_id}/disabled",
        json={"disabled": False},
        headers=bearer(admin["access_token"]),
    )
    assert enabled.status_code == 200
    assert (await identity.login(email)).status_code == 200


async def test_api_key_client_credentials(identity_on: Identity) -> None:
    identity = identity_on
    admin = await identity.user_with_roles({"admin"})
    created = await identity.client.post(
        "/auth/api-keys",
        json={"name": "reports job", "roles": ["reporting"]},
        headers=bearer(admin["access_token"]),
    )
    assert created.status_code == 201, created.text
    key = created.json()
    token = await identity.client.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "client_secret": key["key"]},
    )
    assert token.status_code == 200, token.text
    jwks = (await identity.client.get("/.well-known/jwks.json")).json()
    verifier = TokenVerifier(StaticJwks(jwks), ISSUER, AUDIENCE)
    principal = await verifier.verify(token.json()["access_token"])
    assert principal.kind == "client"
    assert principal.subject == f"apikey:{key['id']}"
    assert principal.roles == {"reporting"}

    revoked = await identity.client.delete(
        f"/auth/api-keys/{key['id']}", headers=bearer(admin["access_token"])
    )
    assert revoked.status_code == 204
    refused = await identity.client.post(
        "/auth/token", json={"grant_type": "client_credentials", "client_secret": key["key"]}
    )
    assert assert_problem(refused, 401)["error"] == "invalid_client"
    rows = await identity.all_rows()
    assert key["key"] not in repr(rows)
    assert key["key"].split("_", 2)[2] not in repr(rows)  # the secret may contain "_"


async def test_the_client_address_is_throttled_across_emails(identity_on: Identity) -> None:
    identity = identity_on
    limit = identity.config.login_throttle_attempts * identity.config.ip_throttle_factor
    for n in range(limit):
        assert_problem(await identity.login(f"sprayed{n}@example.com", "wrong password x"), 401)
    assert_problem(await identity.login("fresh@example.com", "wrong password x"), 429)
