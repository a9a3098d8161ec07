"""POST /auth/login and /auth/password: no account oracle, throttling, rehashing."""

from __future__ import annotations

import sqlalchemy as sa
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from support.identity_app import PASSWORD, Identity, StartIdentity, bearer
from support.runtime_api import assert_problem

from microforge.runtime.auth.identity import IdentityError, create_user
from microforge.runtime.auth.passwords import verify_dummy, verify_password

WRONG = "not the right password"


async def test_unknown_email_and_wrong_password_answer_alike(identity: Identity) -> None:
    email = (await identity.signup())["user"]["email"]
    wrong = await identity.login(email, WRONG)
    unknown = await identity.login("nobody@example.com", WRONG)
    for response in (wrong, unknown):
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    assert wrong.json() == unknown.json()
    assert wrong.json()["detail"] == "Invalid email or password."
    assert email not in wrong.text


async def test_login_response_carries_a_user_token_pair(identity: Identity) -> None:
    signed_up = await identity.signup()
    response = await identity.login(signed_up["user"]["email"])
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    pair = response.json()
    assert set(pair) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
    }
    principal = await identity.verifier.verify(pair["access_token"])
    assert principal.kind == "user"
    assert principal.subject == signed_up["user"]["id"]


async def test_the_email_lock_holds_for_the_whole_window(identity: Identity) -> None:
    email = (await identity.signup())["user"]["email"]
    window = identity.config.login_throttle_window
    for _ in range(identity.config.login_throttle_attempts):
        assert_problem(await identity.login(email, WRONG), 401)
    identity.clock.advance(window - 5)
    locked = await identity.login(email)
    assert_problem(locked, 429)
    assert int(locked.headers["retry-after"]) == 5
    # An unknown e-mail is throttled the same way: no hint that it has no account.
    for _ in range(identity.config.login_throttle_attempts):
        assert_problem(await identity.login("ghost@example.com", WRONG), 401)
    ghost = await identity.login("ghost@example.com", WRONG)
    assert ghost.json()["detail"] == locked.json()["detail"]
    identity.clock.advance(6)
    assert (await identity.login(email)).status_code == 200


async def test_failures_outside_the_window_do_not_add_up(identity: Identity) -> None:
    email = (await identity.signup())["user"]["email"]
    for _ in range(identity.config.login_throttle_attempts * 3):
        assert_problem(await identity.login(email, WRONG), 401)
        identity.clock.advance(identity.config.login_throttle_window / 2 + 1)
    assert (await identity.login(email)).status_code == 200


async def test_forwarded_addresses_count_only_behind_a_trusted_proxy(
    start_identity: StartIdentity,
) -> None:
    async with start_identity() as identity:
        limit = identity.config.login_throttle_attempts * identity.config.ip_throttle_factor
        for n in range(limit):
            # Made-up X-Forwarded-For values do not give a fresh address.
            response = await identity.client.post(
                "/auth/login",
                json={"email": f"spray{n}@example.com", "password": WRONG},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
            )
            assert_problem(response, 401)
        assert_problem(await identity.login("other@example.com", WRONG), 429)

    async with start_identity(trusted_proxy_hops=1) as identity:
        limit = identity.config.login_throttle_attempts * identity.config.ip_throttle_factor
        email = (await identity.signup())["user"]["email"]
        sprayer = {"X-Forwarded-For": "203.0.113.9"}
        for n in range(limit):
            response = await identity.client.post(
                "/auth/login",
                json={"email": f"spray{n}@example.com", "password": WRONG},
                headers=sprayer,
            )
            assert_problem(response, 401)
        blocked = await identity.client.post(
            "/auth/login", json={"email": email, "password": PASSWORD}, headers=sprayer
        )
        assert_problem(blocked, 429)
        # The address the proxy appended is the client; earlier entries are the client's word.
        elsewhere = await identity.client.post(
            "/auth/login",
            json={"email": email, "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.9, 192.0.2.44"},
        )
        assert elsewhere.status_code == 200, elsewhere.text


async def test_an_outdated_hash_is_replaced_on_login(identity: Identity) -> None:
    signed_up = await identity.signup()
    credentials = identity.tables.credentials
    weak = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8192, parallelism=1),))
    old_hash = weak.hash(PASSWORD)
    async with identity.engine.begin() as conn:
        await conn.execute(sa.update(credentials).values(password_hash=old_hash))
    assert (await identity.login(signed_up["user"]["email"])).status_code == 200
    async with identity.engine.connect() as conn:
        new_hash = (await conn.execute(sa.select(credentials.c.password_hash))).scalar_one()
    assert new_hash != old_hash
    assert "m=65536" in new_hash
    assert (await verify_password(PASSWORD, new_hash)) == (True, None)
    assert (await identity.login(signed_up["user"]["email"])).status_code == 200


async def test_password_helpers() -> None:
    await verify_dummy("anything at all")
    assert await verify_password(PASSWORD, "not a hash") == (False, None)


async def test_password_change_checks_the_current_password(identity: Identity) -> None:
    signed_up = await identity.signup()
    auth = bearer(signed_up["access_token"])
    wrong = await identity.client.post(
        "/auth/password",
        json={"current_password": WRONG, "new_password": "a brand new passphrase"},
        headers=auth,
    )
    assert assert_problem(wrong, 403)["field"] == "current_password"
    weak = await identity.client.post(
        "/auth/password", json={"current_password": PASSWORD, "new_password": "short"}, headers=auth
    )
    assert assert_problem(weak, 422)["field"] == "new_password"
    anonymous = await identity.client.post(
        "/auth/password", json={"current_password": PASSWORD, "new_password": "x" * 20}
    )
    assert_problem(anonymous, 401)
    # Nothing changed: the old password still logs in.
    assert (await identity.login(signed_up["user"]["email"])).status_code == 200


async def test_guessing_the_current_password_is_throttled(identity: Identity) -> None:
    signed_up = await identity.signup()
    auth = bearer(signed_up["access_token"])
    body = {"current_password": WRONG, "new_password": "a brand new passphrase"}
    for _ in range(identity.config.login_throttle_attempts):
        assert_problem(await identity.client.post("/auth/password", json=body, headers=auth), 403)
    right = {**body, "current_password": PASSWORD}
    assert_problem(await identity.client.post("/auth/password", json=right, headers=auth), 429)


async def test_me_needs_a_valid_token(identity: Identity) -> None:
    anonymous = await identity.client.get("/auth/me")
    assert_problem(anonymous, 401)
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert_problem(await identity.client.get("/auth/me", headers=bearer("not.a.jwt")), 401)


async def test_create_user_refuses_bad_input(identity: Identity) -> None:
    async def attempt(**overrides: object) -> str:
        arguments: dict[str, object] = {
            "email": "boot@example.com",
            "password": PASSWORD,
            "roles": {"admin"},
            "user_fields": {"display_name": "Boot"},
            "known_roles": identity.config.roles,
        }
        arguments.update(overrides)
        try:
            await create_user(identity.engine, identity.tables, **arguments)  # type: ignore[arg-type]
        except IdentityError as exc:
            return str(exc)
        return ""

    assert "at least 12" in await attempt(password="short")
    assert "unknown roles: root" in await attempt(roles={"admin", "root"})
    assert "database refused" in await attempt(user_fields={})
    assert await attempt() == ""
    assert "exists already" in await attempt(email="BOOT@example.com")
    pair = await identity.tokens("boot@example.com")
    assert (await identity.verifier.verify(pair["access_token"])).roles == {"admin"}
