"""PUT /auth/users/{id}/roles and /disabled: admins only, known roles, no self-lockout."""

from __future__ import annotations

from typing import Any

from support.identity_app import Identity, StartIdentity, bearer
from support.runtime_api import assert_problem

NO_SUCH_USER = "0190a6e4-1c5b-7cc0-8d1e-0123456789ab"


async def _put(identity: Identity, path: str, body: dict[str, Any], token: str | None) -> Any:
    headers = bearer(token) if token else {}
    return await identity.client.put(path, json=body, headers=headers)


async def test_admins_change_roles_and_tokens_follow(identity: Identity) -> None:
    admin = await identity.user_with_roles({"admin"})
    user = await identity.signup()
    user_id = user["user"]["id"]
    response = await _put(
        identity,
        f"/auth/users/{user_id}/roles",
        {"roles": ["staff", "customer"]},
        admin["access_token"],
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": user_id,
        "roles": ["customer", "staff"],
        "tenant": None,
        "disabled": False,
    }
    # The next refresh (and login) carries the new roles.
    refreshed = await identity.client.post(
        "/auth/refresh", json={"refresh_token": user["refresh_token"]}
    )
    principal = await identity.verifier.verify(refreshed.json()["access_token"])
    assert principal.roles == {"customer", "staff"}


async def test_only_admins_change_roles_or_disable(identity: Identity) -> None:
    user = await identity.signup()
    staff = await identity.user_with_roles({"staff"})
    target = f"/auth/users/{user['user']['id']}"
    for token, status in ((None, 401), (user["access_token"], 403), (staff["access_token"], 403)):
        assert_problem(await _put(identity, f"{target}/roles", {"roles": ["admin"]}, token), status)
        assert_problem(
            await _put(identity, f"{target}/disabled", {"disabled": True}, token), status
        )
    principal = await identity.verifier.verify(
        (await identity.tokens(user["user"]["email"]))["access_token"]
    )
    assert principal.roles == {"customer"}


async def test_roles_must_be_known_and_users_must_exist(identity: Identity) -> None:
    admin = await identity.user_with_roles({"admin"})
    user = await identity.signup()
    unknown = await _put(
        identity,
        f"/auth/users/{user['user']['id']}/roles",
        {"roles": ["root"]},
        admin["access_token"],
    )
    assert assert_problem(unknown, 422)["field"] == "roles"
    for missing in (NO_SUCH_USER, "nope"):
        response = await _put(
            identity, f"/auth/users/{missing}/roles", {"roles": []}, admin["access_token"]
        )
        assert_problem(response, 404)
    extra = await _put(
        identity,
        f"/auth/users/{user['user']['id']}/roles",
        {"roles": [], "tenant_id": "x"},
        admin["access_token"],
    )
    assert_problem(extra, 422)


async def test_admins_cannot_lock_themselves_out(identity: Identity) -> None:
    admin = await identity.user_with_roles({"admin", "staff"})
    other = await identity.user_with_roles({"admin"})
    me = f"/auth/users/{admin['user']['id']}"
    demote = await _put(identity, f"{me}/roles", {"roles": ["staff"]}, admin["access_token"])
    assert assert_problem(demote, 409)["field"] == "roles"
    disable = await _put(identity, f"{me}/disabled", {"disabled": True}, admin["access_token"])
    assert_problem(disable, 409)
    # Keeping an admin role while changing others is fine, and another admin may demote.
    kept = await _put(identity, f"{me}/roles", {"roles": ["admin"]}, admin["access_token"])
    assert kept.status_code == 200
    demoted = await _put(identity, f"{me}/roles", {"roles": ["staff"]}, other["access_token"])
    assert demoted.json()["roles"] == ["staff"]


async def test_disabling_ends_sessions(identity: Identity) -> None:
    admin = await identity.user_with_roles({"admin"})
    user = await identity.signup()
    email = user["user"]["email"]
    session = await identity.tokens(email)
    path = f"/auth/users/{user['user']['id']}/disabled"
    assert (
        await _put(identity, path, {"disabled": True}, admin["access_token"])
    ).status_code == 200
    await _put(identity, path, {"disabled": False}, admin["access_token"])
    # Enabled again, but the sessions from before stay ended.
    for token in (user["refresh_token"], session["refresh_token"]):
        refused = await identity.client.post("/auth/refresh", json={"refresh_token": token})
        assert_problem(refused, 401)
    assert (await identity.login(email)).status_code == 200


async def test_admins_reach_their_own_tenant_only(start_identity: StartIdentity) -> None:
    async with start_identity(tenancy=True) as identity:
        admin = await identity.user_with_roles({"admin"}, tenant="tenant-a")
        stranger = await identity.signup()
        colleague = await identity.user_with_roles({"customer"}, tenant="tenant-a")
        for user_id in (stranger["user"]["id"], NO_SUCH_USER):
            response = await _put(
                identity,
                f"/auth/users/{user_id}/roles",
                {"roles": ["staff"]},
                admin["access_token"],
            )
            assert_problem(response, 404)
        response = await _put(
            identity,
            f"/auth/users/{colleague['user']['id']}/roles",
            {"roles": ["staff"]},
            admin["access_token"],
        )
        assert response.json()["tenant"] == "tenant-a"
