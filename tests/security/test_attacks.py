"""The security suite of issue #3: attacks on the generated shop, each one refused.

The shop example is generated into a temporary folder and its identity, catalog, orders
and payments services run in-process on SQLite, next to a small multi-tenant project for
the cross-tenant attacks. Principals are made for real: customers sign up and log in, the
admin and the staff user are created as the CLI creates them. Every attack in ``ATTACKS``
is one request (once after a preparation) that must be refused with an exact status and
a problem+json body -- or, for list queries, answered with no foreign row -- and must
leave every table of every database exactly as it was.

OWASP API Security Top 10 (2023), by category:
  token     -- API2 broken authentication: forged, expired, confused or tampered tokens
  bola      -- API1 broken object level authorization: other users' rows by id or list
  property  -- API3 broken object property level authorization: mass assignment, hidden fields
  function  -- API5 broken function level authorization: admin and staff actions
  injection -- SQL injection through filter values, sorts, search and cursors
  resource  -- API4 unrestricted resource consumption: capped sizes, login throttling
  tenant    -- API1 across tenants
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from support.auth_tokens import MISSING, b64json, compact, decode_part, standard_claims
from support.mounted_services import (
    MountedService,
    changed_tables,
    fingerprint,
    mounted_services,
)
from support.project import SHOP, generate

from microforge.runtime.auth.identity import create_user
from microforge.runtime.auth.identity.service import LOGIN_FAILED
from microforge.runtime.auth.keys import KeyStore
from microforge.runtime.auth.tokens import TokenIssuer
from microforge.runtime.auth.wiring import project_audience, project_issuer
from microforge.runtime.idempotency.key import new_idempotency_key
from microforge.runtime.ids import uuid7

PASSWORD = "a long enough passphrase"
PROBLEM_JSON = "application/problem+json"
SHOP_SERVICES = ("identity", "catalog", "orders", "payments")
SAAS_SERVICES = ("accounts", "projects")
ISSUER = project_issuer("shop")
AUDIENCE = project_audience("shop")
SAAS_ISSUER = project_issuer("saas")
SAAS_AUDIENCE = project_audience("saas")

# A second project with tenancy: every signup starts a tenant; projects are per tenant.
SAAS_SPEC = """\
name: saas
auth:
  service: accounts
  user_entity: User
  roles: [member, admin]
  admin_roles: [admin]
  signup: true
  signup_roles: [member]
  tenancy: true
services:
  accounts:
    entities:
      User:
        # Users are tenant rows too: admins see every user -- of their own tenant.
        access:
          read: authenticated
          update: authenticated
          own: id
          all_rows: [admin]
          tenant: true
        fields:
          email: {type: email, unique: true}
          display_name: {type: string, max_length: 80}
  projects:
    entities:
      Project:
        cache: true  # cached rows must stay within their tenant too
        access:
          tenant: true
          read: authenticated
          create: authenticated
          update: authenticated
          delete: authenticated
        fields:
          name: {type: string, max_length: 100, searchable: true}
          budget: {type: integer, min: 0, default: 0}
"""

_REF = re.compile(r"\{([\w.]+)\}")
PEM = serialization.Encoding.PEM
RAW = serialization.Encoding.Raw


# --- requests and the world they run in ---------------------------------------------------


@dataclass
class Account:
    email: str
    id: str
    access_token: str
    refresh_token: str
    tenant: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


Token = Callable[["World"], str]


@dataclass(frozen=True)
class Call:
    """One HTTP request, written before the rows it names exist.

    ``{name}`` in the path, and a JSON or query value that is exactly ``{name}``, stand
    for a row id (``{alice_order}``) or an account's id, e-mail, tenant or tokens
    (``{alice}``, ``{alice.email}``, ``{ann.tenant}``, ``{bob.access}``, ``{bob.refresh}``).
    ``as_`` names the account whose access token is sent; ``token`` makes a (forged)
    token to send instead.
    """

    service: str
    method: str
    path: str
    as_: str | None = None
    json: Any = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    token: Token | None = None
    content: bytes | None = None


@dataclass
class World:
    services: dict[str, MountedService]
    keys: KeyStore  # the shop identity's signing keys: what an attacker must not hold
    attacker_keys: KeyStore  # a valid Ed25519 key nobody trusts
    saas_keys: KeyStore  # the multi-tenant project's identity keys
    accounts: dict[str, Account] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)
    throttle_attempts: int = 0

    def account(self, name: str) -> Account:
        return self.accounts[name]

    def refs(self) -> dict[str, str]:
        refs = {name: str(value) for name, value in self.ids.items()}
        for name, account in self.accounts.items():
            refs.update({name: account.id, f"{name}.email": account.email})
            refs.update(
                {f"{name}.access": account.access_token, f"{name}.tenant": account.tenant or ""}
            )
            refs[f"{name}.refresh"] = account.refresh_token
        return refs

    def resolve(self, value: Any, refs: dict[str, str]) -> Any:
        if isinstance(value, str) and (whole := _REF.fullmatch(value)):
            return refs[whole[1]]
        if isinstance(value, dict):
            return {key: self.resolve(item, refs) for key, item in value.items()}
        return value

    async def send(self, call: Call) -> httpx.Response:
        refs = self.refs()
        headers = dict(self.accounts[call.as_].headers) if call.as_ else {}
        if call.token is not None:
            headers["Authorization"] = f"Bearer {call.token(self)}"
        if call.method == "POST":
            # As the services' own client does: every POST carries a fresh key (orders
            # and payments require one).
            headers["Idempotency-Key"] = new_idempotency_key()
        headers.update(call.headers)
        return await self.services[call.service].client.request(
            call.method,
            _REF.sub(lambda match: refs[match[1]], call.path),
            headers=headers,
            params=self.resolve(call.params, refs),
            json=self.resolve(call.json, refs),
            content=call.content,
        )

    async def ok(self, call: Call, status: int = 201) -> dict[str, Any]:
        response = await self.send(call)
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json() if response.content else {}
        return body

    async def created(self, call: Call) -> Any:
        """The id of the row ``call`` creates."""
        return (await self.ok(call))["id"]


async def _signup(w: World, service: str, name: str) -> Account:
    email = f"{name}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": name.title()}
    user = (await w.ok(Call(service, "POST", "/auth/signup", json=body)))["user"]
    login = {"email": email, "password": PASSWORD}
    tokens = await w.ok(Call(service, "POST", "/auth/login", json=login), 200)
    me = await w.ok(Call(service, "GET", "/auth/me", headers=_bearer(tokens["access_token"])), 200)
    return Account(email, user["id"], tokens["access_token"], tokens["refresh_token"], me["tenant"])


async def _made_user(
    w: World, service: str, name: str, roles: set[str], tenant: str | None = None
) -> Account:
    """A user made as `microforge users create` makes one, then logged in."""
    mounted = w.services[service]
    email = f"{name}@example.com"
    user = await create_user(
        mounted.engine,
        mounted.app_module.TABLES,
        email,
        PASSWORD,
        roles,
        {"display_name": name.title()},
        tenant=tenant,
        known_roles=mounted.app_module.IDENTITY.roles,
    )
    login = {"email": email, "password": PASSWORD}
    tokens = await w.ok(Call(service, "POST", "/auth/login", json=login), 200)
    return Account(email, str(user["id"]), tokens["access_token"], tokens["refresh_token"], tenant)


async def _populate(w: World) -> None:
    for name in ("alice", "bob", "carol"):
        w.accounts[name] = await _signup(w, "identity", name)
    w.accounts["admin"] = await _made_user(w, "identity", "admin", {"admin"})
    w.accounts["staff"] = await _made_user(w, "identity", "staff", {"staff"})
    w.throttle_attempts = w.services["identity"].app_module.IDENTITY.login_throttle_attempts

    # The catalog, kept by staff: an active product and a draft linked to it as "related".
    category = {"name": "Books", "slug": "books"}
    w.ids["category"] = await w.created(Call("catalog", "POST", "/categories", "staff", category))
    w.ids["tag"] = await w.created(Call("catalog", "POST", "/tags", "staff", {"name": "new"}))
    product = {"name": "DDD", "price": "54.99", "category_id": w.ids["category"]}
    for key, extra in (
        ("product", {"sku": "BK-1", "status": "active"}),
        ("draft", {"sku": "BK-2"}),
    ):
        body = {**product, **extra, "name": f"{key} book"}
        w.ids[key] = await w.created(Call("catalog", "POST", "/products", "staff", body))
    await w.ok(Call("catalog", "PUT", "/products/{product}/related/{draft}", "staff"), 204)

    # Each customer's order, payment and address; Alice's order has a line.
    for name in ("alice", "bob"):
        order = {"number": f"{name.upper()}-1", "total": "54.99", "shipping_address": {}}
        w.ids[f"{name}_order"] = await w.created(Call("orders", "POST", "/orders", name, order))
        payment = payment_body(f"{{{name}_order}}", amount="54.99")
        w.ids[f"{name}_payment"] = await w.created(
            Call("payments", "POST", "/payments", name, payment)
        )
        address = address_body(recipient=name.title())
        w.ids[f"{name}_address"] = await w.created(
            Call("identity", "POST", "/addresses", name, address)
        )
    line = {
        "order_id": "{alice_order}",
        "product_id": "{product}",
        "quantity": 1,
        "unit_price": "9",
    }
    w.ids["alice_item"] = await w.created(Call("orders", "POST", "/order-items", "alice", line))
    # Staff record the payment provider's reference: a field customers may not read.
    reference = {"provider_reference": "psp_alice_secret", "status": "authorized"}
    await w.ok(Call("payments", "PATCH", "/payments/{alice_payment}", "staff", reference), 200)
    key = await w.ok(
        Call("identity", "POST", "/auth/api-keys", "admin", {"name": "ci", "roles": ["staff"]})
    )
    w.ids.update(api_key=key["id"], api_key_secret=key["key"], guessed_id=uuid7())
    # A machine client holding only the customer role: `own` rules apply to it as well.
    key = await w.ok(
        Call("identity", "POST", "/auth/api-keys", "admin", {"name": "bot", "roles": ["customer"]})
    )
    grant = {"grant_type": "client_credentials", "client_secret": key["key"]}
    client = await w.ok(Call("identity", "POST", "/auth/token", json=grant), 200)
    w.accounts["bot"] = Account("", f"apikey:{key['id']}", client["access_token"], "")
    w.ids["forged_api_key"] = f"mf_{key['prefix']}_{secrets.token_urlsafe(32)}"

    # Two tenants, Ann's and Ben's, each with a member and an admin; Ann's has an API key.
    for name in ("ann", "ben"):
        w.accounts[name] = await _signup(w, "accounts", name)
        project = {"name": f"{name} launch plan"}
        w.ids[f"{name}_project"] = await w.created(
            Call("projects", "POST", "/projects", name, project)
        )
    ben_tenant = w.accounts["ben"].tenant
    assert ben_tenant is not None
    assert ben_tenant != w.accounts["ann"].tenant
    w.accounts["ben_admin"] = await _made_user(w, "accounts", "ben-admin", {"admin"}, ben_tenant)
    ann_tenant = w.accounts["ann"].tenant
    w.accounts["ann_admin"] = await _made_user(w, "accounts", "ann-admin", {"admin"}, ann_tenant)
    key = await w.ok(
        Call("accounts", "POST", "/auth/api-keys", "ann_admin", {"name": "a", "roles": ["member"]})
    )
    w.ids["ann_api_key"] = key["id"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("security")
    generate(SHOP, root / "shop")
    saas_spec = root / "saas.yaml"
    saas_spec.write_text(SAAS_SPEC, encoding="utf-8")
    generate(saas_spec, root / "saas")
    keys = KeyStore.ensure(root / "keys" / "shop")
    saas_keys = KeyStore.ensure(root / "keys" / "saas")
    attacker_keys = KeyStore.ensure(root / "keys" / "attacker")
    for name in ("shop", "saas"):
        (root / "db" / name).mkdir(parents=True)
    async with (
        mounted_services(root / "shop", SHOP_SERVICES, keys, root / "db" / "shop") as shop,
        mounted_services(root / "saas", SAAS_SERVICES, saas_keys, root / "db" / "saas") as saas,
    ):
        w = World({**shop, **saas}, keys, attacker_keys, saas_keys)
        await _populate(w)
        yield w


# --- bodies -------------------------------------------------------------------------------


def order_body(**extra: Any) -> dict[str, Any]:
    return {"number": f"X-{uuid.uuid4().hex[:8]}", "total": "1.00", "shipping_address": {}, **extra}


def payment_body(order: str = "{bob_order}", **extra: Any) -> dict[str, Any]:
    return {
        "order_id": order,
        "amount": "1.00",
        "currency": "EUR",
        "method": "card",
        **extra,
    }


def address_body(**extra: Any) -> dict[str, Any]:
    return {
        "recipient": "Someone",
        "line1": "Main St 1",
        "city": "Berlin",
        "postal_code": "10115",
        "country_code": "DE",
        **extra,
    }


def line_body(order: str, **extra: Any) -> dict[str, Any]:
    return {"order_id": order, "product_id": "{product}", "quantity": 5, "unit_price": "0", **extra}


def signup_body(**extra: Any) -> dict[str, Any]:
    email = f"mallory-{uuid.uuid4().hex[:8]}@example.com"
    return {"email": email, "password": PASSWORD, "display_name": "Mallory", **extra}


def nested(depth: int) -> list[Any]:
    """A JSON array ``depth`` levels deep."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def deep_json(depth: int) -> bytes:
    brackets = b"[" * depth + b"]" * depth
    return b'{"number": "DEEP-1", "total": "1", "shipping_address": ' + brackets + b"}"


def forged_cursor() -> str:
    payload = json.dumps({"s": "created_at,id", "v": ["' OR 1=1 --", "x"]}).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


# --- hand-made tokens ---------------------------------------------------------------------


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _claims(w: World, **overrides: Any) -> dict[str, Any]:
    """What the identity service would put in Bob's token, but for ``overrides``."""
    overrides = {"sub": w.account("bob").id, "roles": ["customer"], **overrides}
    return standard_claims(time.time(), jti=uuid.uuid4().hex, **overrides)


def signed(**overrides: Any) -> Token:
    """A token signed with the shop's real key: only ``overrides`` make it wrong."""
    header = {key[len("header_") :]: v for key, v in overrides.items() if key.startswith("header_")}
    claims = {key: v for key, v in overrides.items() if not key.startswith("header_")}

    def make(w: World) -> str:
        key = w.keys.signing_key
        full = {"alg": "EdDSA", "typ": "at+jwt", "kid": key.kid, **header}
        return compact(full, _claims(w, **claims), key.private_key.sign)

    return make


def issued(*, age: float = 0, issuer: str = ISSUER, audience: str = AUDIENCE) -> Token:
    """A token made by a TokenIssuer over the real keys, ``age`` seconds ago."""

    def make(w: World) -> str:
        moment = time.time() - age
        maker = TokenIssuer(w.keys, issuer, audience, 900, clock=lambda: moment)
        return maker.issue(w.account("bob").id, "user", ["customer"])[0]

    return make


def other_key(w: World) -> str:
    return TokenIssuer(w.attacker_keys, ISSUER, AUDIENCE).issue(
        w.account("bob").id, "user", ["admin"]
    )[0]


def other_key_real_kid(w: World) -> str:
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": w.keys.signing_key.kid}
    return compact(
        header, _claims(w, roles=["admin"]), w.attacker_keys.signing_key.private_key.sign
    )


def tampered_roles(w: World) -> str:
    header, payload, signature = w.account("bob").access_token.split(".")
    claims = {**decode_part(payload), "roles": ["admin", "customer", "staff"]}
    return f"{header}.{b64json(claims)}.{signature}"


def alg_none(w: World) -> str:
    header = {"alg": "none", "typ": "at+jwt", "kid": w.keys.signing_key.kid}
    return compact(header, _claims(w, roles=["admin"]), lambda _: b"")


def hs256_with_public_key(encoding: serialization.Encoding) -> Token:
    """The classic confusion: HMAC keyed with the verifier's public key (PEM or raw
    bytes), hoping the verifier takes the algorithm from the token's header."""

    def make(w: World) -> str:
        public = w.keys.signing_key.public_key
        form = (
            serialization.PublicFormat.SubjectPublicKeyInfo
            if encoding is serialization.Encoding.PEM
            else serialization.PublicFormat.Raw
        )
        secret = public.public_bytes(encoding, form)
        header = {"alg": "HS256", "typ": "at+jwt", "kid": w.keys.signing_key.kid}
        claims = _claims(w, roles=["admin"])
        return compact(header, claims, lambda data: hmac.new(secret, data, hashlib.sha256).digest())

    return make


def rs256(w: World) -> str:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header = {"typ": "at+jwt", "kid": w.keys.signing_key.kid}
    return jwt.encode(_claims(w, roles=["admin"]), private, algorithm="RS256", headers=header)


def without_tenant(w: World) -> str:
    # What the identity service would issue for an account without a tenant (say, one
    # made before tenancy was switched on): validly signed, no tenant claim.
    maker = TokenIssuer(w.saas_keys, SAAS_ISSUER, SAAS_AUDIENCE)
    return maker.issue(str(uuid7()), "user", ["admin"])[0]


def account_secret(account: str, kind: str) -> Token:
    def make(w: World) -> str:
        if kind == "refresh":
            return w.account(account).refresh_token
        return (
            str(w.ids["api_key_secret"]) if kind == "api-key" else w.account(account).access_token
        )

    return make


# --- the attack table ---------------------------------------------------------------------

Check = Callable[[World, httpx.Response], None]
Prepare = Callable[[World], Awaitable[None]]


@dataclass(frozen=True)
class Attack:
    id: str
    status: int
    call: Call
    check: Check | None = None
    prepare: Prepare | None = None
    # A second request that must be refused too, with its status.
    follow_up: tuple[Call, int] | None = None
    # Tables this attack may change; the attack's comment says why.
    may_change: frozenset[str] = frozenset()
    xfail: str | None = None


def bad_token(id: str, token: Token, service: str = "orders", path: str = "/orders") -> Attack:
    return Attack(id, 401, Call(service, "GET", path, token=token))


def empty_page(_: World, response: httpx.Response) -> None:
    body = response.json()
    assert body["items"] == []
    assert body["total"] == 0


def only_rows_of(column: str, owner: str, count: int) -> Check:
    """Every row listed has ``column`` == ``owner`` (a ref such as ``bob`` or ``ben.tenant``)."""

    def check(w: World, response: httpx.Response) -> None:
        body = response.json()
        assert {item[column] for item in body["items"]} == {w.refs()[owner]}
        assert body["total"] == len(body["items"]) == count

    return check


def names(key: str, value: str) -> Check:
    """The problem's ``key`` is ``value``: the offending field or parameter, or its detail."""

    def check(_: World, response: httpx.Response) -> None:
        assert response.json()[key] == value, response.json()

    return check


def invalid(*fields: str) -> Check:
    """A schema validation problem listing exactly ``fields``."""

    def check(_: World, response: httpx.Response) -> None:
        body = response.json()
        assert body["type"] == "urn:microforge:problem:validation", body
        assert {error["field"] for error in body["errors"]} == set(fields), body["errors"]

    return check


def like_a_missing_row(entity: str, ref: str) -> Check:
    """A row out of scope answers exactly as a missing one would: no existence oracle."""

    def check(w: World, response: httpx.Response) -> None:
        assert response.json()["detail"] == f"No {entity} with id {w.refs()[ref]}."

    return check


async def refresh_once(w: World) -> None:
    """Bob's client refreshes his session properly; the spent token is what gets stolen."""
    pair = await w.ok(
        Call("identity", "POST", "/auth/refresh", json={"refresh_token": "{bob.refresh}"}), 200
    )
    w.ids["bob_next_refresh"] = pair["refresh_token"]


async def fail_logins(w: World) -> None:
    """The configured number of wrong passwords for Carol, each refused as such."""
    wrong = {"email": w.account("carol").email, "password": "certainly not her password"}
    for _ in range(w.throttle_attempts):
        response = await w.send(Call("identity", "POST", "/auth/login", json=wrong))
        assert response.status_code == 401, response.text
        assert response.json()["detail"] == LOGIN_FAILED


TOKEN = [
    bad_token("forged-with-another-key", other_key),
    bad_token("forged-with-another-key-under-the-real-kid", other_key_real_kid),
    bad_token("expired", issued(age=3600)),
    bad_token("not-valid-yet-nbf", signed(nbf=int(time.time()) + 3600)),
    bad_token("issued-in-the-future-iat", signed(iat=int(time.time()) + 3600)),
    bad_token("wrong-audience", issued(audience="urn:microforge:other")),
    bad_token("wrong-issuer", issued(issuer="urn:microforge:shop:evil")),
    bad_token("tampered-payload-roles", tampered_roles, "identity", "/auth/api-keys"),
    bad_token("alg-none", alg_none),
    bad_token("hs256-keyed-with-the-pem-public-key", hs256_with_public_key(PEM)),
    bad_token("hs256-keyed-with-the-raw-public-key", hs256_with_public_key(RAW)),
    bad_token("rs256", rs256),
    bad_token("typ-jwt", signed(header_typ="JWT")),
    bad_token("jku-header", signed(header_jku="https://evil.test/jwks.json")),
    bad_token("missing-sub", signed(sub=MISSING, roles=["admin"])),
    bad_token("roles-not-a-list", signed(roles="admin")),
    bad_token("unknown-kind", signed(kind="service")),
    bad_token("garbage", lambda _: "not.a.jwt"),
    bad_token("garbage-on-a-public-route", lambda _: "garbage", "catalog", "/products"),
    bad_token("refresh-token-as-bearer", account_secret("bob", "refresh")),
    bad_token(
        "api-key-as-bearer", account_secret("admin", "api-key"), "identity", "/auth/api-keys"
    ),
    bad_token("token-of-another-project", account_secret("ann", "access")),
    Attack("empty-bearer", 401, Call("orders", "GET", "/orders", headers=_bearer(""))),
    # Services never trust the headers the gateway sets; only a verified token counts.
    Attack(
        "spoofed-gateway-headers",
        401,
        Call("orders", "GET", "/orders", headers={"X-Auth-Subject": "x", "X-Auth-Roles": "admin"}),
    ),
    Attack(
        "token-in-the-query-string",
        401,
        Call("orders", "GET", "/orders", params={"access_token": "{bob.access}"}),
    ),
    # A stolen, already spent refresh token: refused, and the whole session dies with it
    # (the preparation's refresh adds a token, the replay revokes the family: that table).
    Attack(
        "replayed-refresh-token",
        401,
        Call("identity", "POST", "/auth/refresh", json={"refresh_token": "{bob.refresh}"}),
        prepare=refresh_once,
        follow_up=(
            Call("identity", "POST", "/auth/refresh", json={"refresh_token": "{bob_next_refresh}"}),
            401,
        ),
        may_change=frozenset({"identity.auth_refresh_tokens"}),
    ),
    Attack(
        "guessed-refresh-token",
        401,
        Call(
            "identity",
            "POST",
            "/auth/refresh",
            json={"refresh_token": secrets.token_urlsafe(32)},
        ),
    ),
    # Refused as a wrong password is, word for word: logins do not tell which accounts
    # exist. Refused logins are counted, unknown addresses too, so that table changes.
    Attack(
        "login-as-an-unknown-user",
        401,
        Call(
            "identity",
            "POST",
            "/auth/login",
            json={"email": "nobody@example.com", "password": PASSWORD},
        ),
        names("detail", LOGIN_FAILED),
        may_change=frozenset({"identity.auth_login_attempts"}),
    ),
    Attack(
        "client-credentials-with-a-forged-secret",
        401,
        Call(
            "identity",
            "POST",
            "/auth/token",
            json={"grant_type": "client_credentials", "client_secret": "{forged_api_key}"},
        ),
    ),
    Attack(
        "basic-scheme",
        401,
        Call("orders", "GET", "/orders", headers={"Authorization": "Basic Ym9iOnNlY3JldA=="}),
    ),
]

BOLA = [
    Attack(
        "read-anothers-order",
        404,
        Call("orders", "GET", "/orders/{alice_order}", "bob"),
        like_a_missing_row("Order", "alice_order"),
    ),
    Attack(
        "guess-an-order-id",
        404,
        Call("orders", "GET", "/orders/{guessed_id}", "bob"),
        like_a_missing_row("Order", "guessed_id"),
    ),
    # Customers may not change or delete orders at all: the role check answers first.
    Attack(
        "change-anothers-order",
        403,
        Call("orders", "PATCH", "/orders/{alice_order}", "bob", {"notes": "mine now"}),
    ),
    Attack("delete-anothers-order", 403, Call("orders", "DELETE", "/orders/{alice_order}", "bob")),
    Attack(
        "read-anothers-order-line", 404, Call("orders", "GET", "/order-items/{alice_item}", "bob")
    ),
    Attack(
        "read-anothers-payment",
        404,
        Call("payments", "GET", "/payments/{alice_payment}", "bob"),
        like_a_missing_row("Payment", "alice_payment"),
    ),
    Attack(
        "change-anothers-payment",
        403,
        Call("payments", "PATCH", "/payments/{alice_payment}", "bob", {"amount": "0.01"}),
    ),
    Attack("read-anothers-profile", 404, Call("identity", "GET", "/users/{alice}", "bob")),
    Attack(
        "change-anothers-profile",
        404,
        Call("identity", "PATCH", "/users/{alice}", "bob", {"email": "bob2@example.com"}),
    ),
    Attack("delete-anothers-profile", 403, Call("identity", "DELETE", "/users/{alice}", "bob")),
    Attack(
        "read-anothers-address", 404, Call("identity", "GET", "/addresses/{alice_address}", "bob")
    ),
    Attack(
        "change-anothers-address",
        404,
        Call("identity", "PATCH", "/addresses/{alice_address}", "bob", {"city": "Elsewhere"}),
    ),
    Attack(
        "delete-anothers-address",
        404,
        Call("identity", "DELETE", "/addresses/{alice_address}", "bob"),
    ),
    Attack(
        "list-orders-of-another-customer",
        200,
        Call("orders", "GET", "/orders", "bob", params={"customer_id": "{alice}"}),
        empty_page,
    ),
    Attack(
        "list-orders-of-everyone-but-me",
        200,
        Call("orders", "GET", "/orders", "bob", params={"customer_id__ne": "{bob}"}),
        empty_page,
    ),
    Attack(
        "list-lines-of-anothers-order",
        200,
        Call("orders", "GET", "/order-items", "bob", params={"order_id": "{alice_order}"}),
        empty_page,
    ),
    Attack(
        "list-payments-of-another-customer",
        200,
        Call("payments", "GET", "/payments", "bob", params={"customer_id": "{alice}"}),
        empty_page,
    ),
    Attack(
        "list-all-users",
        200,
        Call("identity", "GET", "/users", "bob", params={"limit": "1000"}),
        only_rows_of("id", "bob", 1),
    ),
    Attack(
        "find-a-user-by-email",
        200,
        Call("identity", "GET", "/users", "bob", params={"email": "{alice.email}"}),
        empty_page,
    ),
    Attack(
        "create-an-order-for-another-customer",
        403,
        Call("orders", "POST", "/orders", "bob", order_body(customer_id="{alice}")),
        names("field", "customer_id"),
    ),
    Attack(
        "create-a-payment-for-another-customer",
        403,
        Call("payments", "POST", "/payments", "bob", payment_body(customer_id="{alice}")),
        names("field", "customer_id"),
    ),
    Attack(
        "create-an-address-for-another-user",
        403,
        Call("identity", "POST", "/addresses", "bob", address_body(user_id="{alice}")),
        names("field", "user_id"),
    ),
    Attack(
        "add-a-line-to-anothers-order",
        422,
        Call("orders", "POST", "/order-items", "bob", line_body("{alice_order}")),
        names("field", "order_id"),
    ),
    Attack("anonymous-reads-a-draft-product", 404, Call("catalog", "GET", "/products/{draft}")),
    Attack(
        "anonymous-lists-the-links-of-a-draft",
        404,
        Call("catalog", "GET", "/products/{draft}/related"),
    ),
    # A machine client is no customer: `own` leaves it no rows unless a role exempts it.
    Attack("machine-client-lists-orders", 200, Call("orders", "GET", "/orders", "bot"), empty_page),
    Attack(
        "machine-client-reads-an-order", 404, Call("orders", "GET", "/orders/{alice_order}", "bot")
    ),
    Attack(
        "machine-client-creates-an-order",
        403,
        Call("orders", "POST", "/orders", "bot", order_body()),
        names("field", "customer_id"),
    ),
    Attack(
        "anonymous-lists-draft-products",
        200,
        Call("catalog", "GET", "/products", params={"status": "draft"}),
        empty_page,
    ),
    Attack(
        "anonymous-reaches-a-draft-through-a-link",
        200,
        Call("catalog", "GET", "/products/{product}/related"),
        empty_page,
    ),
]

PROPERTY = [
    Attack(
        "create-an-order-already-paid",
        403,
        Call("orders", "POST", "/orders", "alice", order_body(status="paid")),
        names("field", "status"),
    ),
    Attack(
        "create-a-payment-already-captured",
        403,
        Call("payments", "POST", "/payments", "bob", payment_body(status="captured")),
        names("field", "status"),
    ),
    Attack(
        "set-payment-captured-at",
        403,
        Call("payments", "POST", "/payments", "bob", payment_body(captured_at="2026-01-01T00:00Z")),
        names("field", "captured_at"),
    ),
    Attack(
        "set-payment-provider-reference",
        403,
        Call("payments", "POST", "/payments", "bob", payment_body(provider_reference="psp_x")),
        names("field", "provider_reference"),
    ),
    Attack(
        "filter-payments-by-a-hidden-field",
        403,
        Call(
            "payments",
            "GET",
            "/payments",
            "alice",
            params={"provider_reference": "psp_alice_secret"},
        ),
        names("parameter", "provider_reference"),
    ),
    Attack(
        "probe-a-hidden-field-by-prefix",
        403,
        Call("payments", "GET", "/payments", "alice", params={"provider_reference__gt": "psp"}),
        names("parameter", "provider_reference__gt"),
    ),
    Attack(
        "sort-payments-by-a-hidden-field",
        403,
        Call("payments", "GET", "/payments", "alice", params={"sort": "-provider_reference"}),
        names("parameter", "sort"),
    ),
    Attack(
        "give-myself-roles-through-patch",
        422,
        Call("identity", "PATCH", "/users/{bob}", "bob", {"roles": ["admin"]}),
        invalid("roles"),
    ),
    Attack(
        "move-myself-to-a-tenant-through-patch",
        422,
        Call("identity", "PATCH", "/users/{bob}", "bob", {"tenant_id": "t-1"}),
        invalid("tenant_id"),
    ),
    Attack(
        "take-anothers-id-through-patch",
        422,
        Call("identity", "PATCH", "/users/{bob}", "bob", {"id": "{alice}"}),
        invalid("id"),
    ),
    Attack(
        "sign-up-with-roles",
        422,
        Call("identity", "POST", "/auth/signup", json=signup_body(roles=["admin"])),
        invalid("roles"),
    ),
    Attack(
        "sign-up-into-a-tenant",
        422,
        Call("identity", "POST", "/auth/signup", json=signup_body(tenant_id="t-1")),
        invalid("tenant_id"),
    ),
    Attack(
        "sign-up-with-a-chosen-id",
        422,
        Call("identity", "POST", "/auth/signup", json=signup_body(id="{alice}")),
        invalid("id"),
    ),
    Attack(
        "create-an-order-with-id-and-timestamps",
        422,
        Call(
            "orders",
            "POST",
            "/orders",
            "bob",
            order_body(id="{alice_order}", created_at="2000-01-01T00:00:00Z"),
        ),
        invalid("id", "created_at"),
    ),
    Attack(
        "hand-my-address-to-another-user",
        403,
        Call("identity", "PATCH", "/addresses/{bob_address}", "bob", {"user_id": "{alice}"}),
        names("field", "user_id"),
    ),
    Attack(
        "bill-a-line-of-my-order-to-another-customer",
        403,
        Call(
            "orders", "POST", "/order-items", "bob", line_body("{bob_order}", customer_id="{alice}")
        ),
        names("field", "customer_id"),
    ),
]

_PRODUCT = {"sku": "EVIL-1", "name": "Free", "price": "0", "category_id": "{category}"}

FUNCTION = [
    Attack(
        "customer-creates-a-product", 403, Call("catalog", "POST", "/products", "bob", _PRODUCT)
    ),
    Attack(
        "customer-renames-a-category",
        403,
        Call("catalog", "PATCH", "/categories/{category}", "bob", {"name": "Pwned"}),
    ),
    Attack(
        "customer-tags-a-product",
        403,
        Call("catalog", "PUT", "/products/{product}/tags/{tag}", "bob"),
    ),
    Attack("anonymous-creates-a-tag", 401, Call("catalog", "POST", "/tags", json={"name": "spam"})),
    Attack("anonymous-lists-orders", 401, Call("orders", "GET", "/orders")),
    Attack("anonymous-asks-who-it-is", 401, Call("identity", "GET", "/auth/me")),
    Attack(
        "customer-reprices-own-order",
        403,
        Call("orders", "PATCH", "/orders/{bob_order}", "bob", {"total": "0.00"}),
    ),
    Attack(
        "customer-deletes-own-order", 403, Call("orders", "DELETE", "/orders/{bob_order}", "bob")
    ),
    Attack(
        "customer-creates-a-user",
        403,
        Call("identity", "POST", "/users", "bob", {"email": "x@example.com", "display_name": "X"}),
    ),
    Attack("customer-deletes-own-user", 403, Call("identity", "DELETE", "/users/{bob}", "bob")),
    Attack(
        "customer-makes-self-admin",
        403,
        Call("identity", "PUT", "/auth/users/{bob}/roles", "bob", {"roles": ["admin"]}),
    ),
    Attack(
        "customer-disables-another-user",
        403,
        Call("identity", "PUT", "/auth/users/{alice}/disabled", "bob", {"disabled": True}),
    ),
    Attack(
        "customer-creates-an-api-key",
        403,
        Call("identity", "POST", "/auth/api-keys", "bob", {"name": "k", "roles": ["admin"]}),
    ),
    Attack("customer-lists-api-keys", 403, Call("identity", "GET", "/auth/api-keys", "bob")),
    Attack(
        "customer-revokes-an-api-key",
        403,
        Call("identity", "DELETE", "/auth/api-keys/{api_key}", "bob"),
    ),
    # Staff run the shop, but staff is not an admin role: no keys, no role changes.
    Attack(
        "staff-creates-an-api-key",
        403,
        Call("identity", "POST", "/auth/api-keys", "staff", {"name": "k", "roles": ["admin"]}),
    ),
    Attack(
        "staff-makes-self-admin",
        403,
        Call("identity", "PUT", "/auth/users/{staff}/roles", "staff", {"roles": ["admin"]}),
    ),
]


def query(service: str, path: str, as_: str | None = None, **params: str) -> Call:
    return Call(service, "GET", path, as_, params=params)


# Values are bound parameters: a quote in a text filter is just a character that no row
# has (200, empty); a value that does not parse as its column's type is a 400 naming it.
INJECTION = [
    Attack(
        "filter-or-1-equals-1", 200, query("catalog", "/products", name="' OR 1=1 --"), empty_page
    ),
    Attack(
        "filter-drop-table-in-a-uuid",
        400,
        query("orders", "/orders", "bob", customer_id="1; DROP TABLE orders"),
        names("parameter", "customer_id"),
    ),
    Attack(
        "filter-or-in-a-number",
        400,
        query("orders", "/orders", "bob", total__gt="0 OR 1=1"),
        names("parameter", "total__gt"),
    ),
    Attack(
        "filter-quote-in-an-in-list",
        200,
        query("orders", "/orders", "bob", number__in="x') OR ('1'='1,ALICE-1"),
        empty_page,
    ),
    Attack(
        "filter-quote-in-an-enum",
        200,
        query("catalog", "/products", status="draft' OR '1'='1"),
        empty_page,
    ),
    Attack(
        "filter-nul-byte",
        400,
        query("catalog", "/products", name="a\x00b"),
        names("parameter", "name"),
    ),
    Attack(
        "filter-on-a-column-that-is-not-exposed",
        400,
        query("identity", "/users", "bob", password_hash__startswith="$argon2"),
        names("parameter", "password_hash__startswith"),
    ),
    Attack(
        "unknown-operator",
        400,
        query("orders", "/orders", "bob", total__regex=".*"),
        names("parameter", "total__regex"),
    ),
    Attack(
        "unknown-operator-sql-keyword",
        400,
        query("orders", "/orders", "bob", number__or="1=1"),
        names("parameter", "number__or"),
    ),
    Attack(
        "sort-drop-table",
        400,
        query("catalog", "/products", sort="name;DROP TABLE x"),
        names("parameter", "sort"),
    ),
    Attack(
        "sort-subquery",
        400,
        query("catalog", "/products", sort="(select 1)"),
        names("parameter", "sort"),
    ),
    Attack(
        "sort-case-expression",
        400,
        query("orders", "/orders", "bob", sort="-id,CASE WHEN 1=1 THEN number END"),
        names("parameter", "sort"),
    ),
    Attack(
        "search-quote-or-true", 200, query("catalog", "/products", q="%' OR '1'='1"), empty_page
    ),
    Attack("search-wildcard-only", 200, query("orders", "/orders", "alice", q="%"), empty_page),
    Attack(
        "limit-expression",
        400,
        query("catalog", "/products", limit="1 OR 1=1"),
        names("parameter", "limit"),
    ),
    Attack(
        "forged-cursor",
        400,
        query("orders", "/orders", "bob", cursor=forged_cursor()),
        names("parameter", "cursor"),
    ),
]

_HUGE = {"junk": "x" * (4 * 1024 * 1024)}
_JSON = {"Content-Type": "application/json"}

RESOURCE = [
    Attack(
        "limit-100000",
        400,
        query("catalog", "/products", limit="100000"),
        names("parameter", "limit"),
    ),
    Attack(
        "offset-beyond-the-cap",
        400,
        query("catalog", "/products", offset=str(10**12)),
        names("parameter", "offset"),
    ),
    Attack(
        "in-list-of-1001-values",
        400,
        query("catalog", "/products", name__in=",".join(["x"] * 1001)),
        names("parameter", "name__in"),
    ),
    Attack(
        "link-list-limit-100000",
        422,
        query("catalog", "/products/{product}/related", limit="100000"),
        invalid("limit"),
    ),
    Attack(
        "oversized-text-field",
        422,
        Call("orders", "POST", "/orders", "bob", order_body(notes="x" * 200_000)),
        invalid("notes"),
    ),
    Attack(
        "huge-json-body",
        413,
        # As Carol, who owns nothing the other attacks look at: today the order is stored.
        Call("orders", "POST", "/orders", "carol", order_body(shipping_address=_HUGE)),
    ),
    # Deeper than the response encoder writes: it was stored, then every page holding
    # the row answered 500 -- the staff's order list included.
    Attack(
        "json-field-nested-300-levels",
        422,
        Call("orders", "POST", "/orders", "carol", order_body(shipping_address=nested(300))),
        names("field", "shipping_address"),
    ),
    Attack(
        "json-field-nested-300-levels-through-patch",
        422,
        Call("identity", "PATCH", "/users/{bob}", "bob", {"preferences": {"theme": nested(300)}}),
        names("field", "preferences"),
    ),
    Attack(
        "deeply-nested-json-body",
        400,
        Call("orders", "POST", "/orders", "bob", headers=_JSON, content=deep_json(100_000)),
    ),
    Attack(
        "signup-password-of-5000-characters",
        422,
        Call("identity", "POST", "/auth/signup", json=signup_body(password="p" * 5000)),
        names("field", "password"),
    ),
    Attack(
        "login-password-of-5000-characters",
        422,
        Call(
            "identity",
            "POST",
            "/auth/login",
            json={"email": "{alice.email}", "password": "p" * 5000},
        ),
        invalid("password"),
    ),
    # Validly signed, valid claims, 9 KiB long: the size cap alone refuses it.
    bad_token("token-of-9-kib", signed(padding="x" * 9 * 1024)),
    # Each refused login is counted in auth_login_attempts: that table must change, and
    # only that one (no session, no credential is touched).
    Attack(
        "login-throttled-after-the-configured-failures",
        429,
        Call(
            "identity", "POST", "/auth/login", json={"email": "{carol.email}", "password": PASSWORD}
        ),
        prepare=fail_logins,
        # The lock is on the account, not on how its address is spelled.
        follow_up=(
            Call(
                "identity",
                "POST",
                "/auth/login",
                json={"email": " CAROL@Example.COM ", "password": PASSWORD},
            ),
            429,
        ),
        may_change=frozenset({"identity.auth_login_attempts"}),
    ),
]

TENANT = [
    Attack(
        "read-another-tenants-row",
        404,
        Call("projects", "GET", "/projects/{ann_project}", "ben"),
        like_a_missing_row("Project", "ann_project"),
    ),
    Attack(
        "change-another-tenants-row",
        404,
        Call("projects", "PATCH", "/projects/{ann_project}", "ben", {"budget": 0}),
    ),
    Attack(
        "delete-another-tenants-row",
        404,
        Call("projects", "DELETE", "/projects/{ann_project}", "ben"),
    ),
    Attack(
        "list-all-rows",
        200,
        query("projects", "/projects", "ben"),
        only_rows_of("tenant_id", "ben.tenant", 1),
    ),
    Attack(
        "list-filtered-by-another-tenant",
        200,
        query("projects", "/projects", "ben", tenant_id="{ann.tenant}"),
        empty_page,
    ),
    Attack(
        "search-another-tenants-rows",
        200,
        query("projects", "/projects", "ben", q="ann"),
        empty_page,
    ),
    Attack(
        "create-in-another-tenant",
        422,
        Call("projects", "POST", "/projects", "ben", {"name": "x", "tenant_id": "{ann.tenant}"}),
        invalid("tenant_id"),
    ),
    Attack(
        "move-own-row-to-another-tenant",
        422,
        Call("projects", "PATCH", "/projects/{ben_project}", "ben", {"tenant_id": "{ann.tenant}"}),
        invalid("tenant_id"),
    ),
    # An admin of one tenant is nobody in another: tenant scoping has no bypass.
    Attack(
        "tenant-admin-reads-another-tenants-row",
        404,
        Call("projects", "GET", "/projects/{ann_project}", "ben_admin"),
    ),
    Attack(
        "tenant-admin-sets-roles-in-another-tenant",
        404,
        Call("accounts", "PUT", "/auth/users/{ann}/roles", "ben_admin", {"roles": ["admin"]}),
    ),
    Attack(
        "tenant-admin-reads-a-user-of-another-tenant",
        404,
        Call("accounts", "GET", "/users/{ann}", "ben_admin"),
    ),
    Attack(
        "tenant-admin-changes-a-user-of-another-tenant",
        404,
        Call("accounts", "PATCH", "/users/{ann}", "ben_admin", {"display_name": "Pwned"}),
    ),
    Attack(
        "tenant-admin-lists-all-users",
        200,
        query("accounts", "/users", "ben_admin"),
        only_rows_of("tenant_id", "ben.tenant", 2),
    ),
    Attack(
        "tenant-admin-disables-a-user-of-another-tenant",
        404,
        Call("accounts", "PUT", "/auth/users/{ann}/disabled", "ben_admin", {"disabled": True}),
    ),
    Attack(
        "tenant-admin-lists-api-keys-of-another-tenant",
        200,
        query("accounts", "/auth/api-keys", "ben_admin"),
        empty_page,
    ),
    Attack(
        "tenant-admin-revokes-an-api-key-of-another-tenant",
        404,
        Call("accounts", "DELETE", "/auth/api-keys/{ann_api_key}", "ben_admin"),
    ),
    Attack(
        "token-without-a-tenant-claim",
        403,
        Call("projects", "GET", "/projects", token=without_tenant),
    ),
    bad_token(
        "shop-token-on-the-tenant-project", account_secret("bob", "access"), "projects", "/projects"
    ),
]

ATTACKS: dict[str, list[Attack]] = {
    "token": TOKEN,
    "bola": BOLA,
    "property": PROPERTY,
    "function": FUNCTION,
    "injection": INJECTION,
    "resource": RESOURCE,
    "tenant": TENANT,
}


def _cases() -> list[Any]:
    return [
        pytest.param(
            attack,
            id=f"{category}:{attack.id}",
            marks=[pytest.mark.xfail(strict=True, reason=attack.xfail)] if attack.xfail else [],
        )
        for category, attacks in ATTACKS.items()
        for attack in attacks
    ]


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("attack", _cases())
async def test_attack_is_refused_and_changes_nothing(world: World, attack: Attack) -> None:
    before = await fingerprint(world.services.values())
    if attack.prepare is not None:
        await attack.prepare(world)
    response = await world.send(attack.call)

    assert response.status_code == attack.status, response.text[:2000]
    if attack.status >= 400:
        assert response.headers["content-type"] == PROBLEM_JSON, response.headers
        assert response.json()["status"] == attack.status
    if attack.status == 404:
        # From the route, not the router: a mistyped path must not pass for a refusal.
        assert response.json()["detail"] != "Not Found"
    if attack.status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer"), response.headers
    if attack.status == 429:
        assert 1 <= int(response.headers["retry-after"]) <= 900, response.headers
    if attack.check is not None:
        attack.check(world, response)
    if attack.follow_up is not None:
        call, status = attack.follow_up
        again = await world.send(call)
        assert again.status_code == status, again.text[:2000]

    after = await fingerprint(world.services.values())
    assert changed_tables(before, after) == sorted(attack.may_change)


def test_the_suite_has_at_least_40_attacks() -> None:
    ids = [f"{category}:{a.id}" for category, attacks in ATTACKS.items() for a in attacks]
    assert len(ids) >= 40
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert all(len(attacks) >= 5 for attacks in ATTACKS.values())


@pytest.mark.asyncio(loop_scope="module")
async def test_the_forgeries_differ_from_a_good_token_only_in_what_they_test(world: World) -> None:
    """Hand-made tokens are accepted when nothing is wrong with them: the refusals above
    are about the one thing each forgery changes, not about how it was made."""
    for token in (signed(), issued()):
        response = await world.send(Call("orders", "GET", "/orders", token=token))
        assert response.status_code == 200, response.text
        orders = response.json()["items"]
        assert world.ids["bob_order"] in {order["id"] for order in orders}
        assert {order["customer_id"] for order in orders} == {world.account("bob").id}


@pytest.mark.asyncio(loop_scope="module")
async def test_owners_still_reach_their_own_rows(world: World) -> None:
    """The refusals are about who asks: the owner reads what the attacker could not."""
    order = await world.ok(Call("orders", "GET", "/orders/{alice_order}", "alice"), 200)
    assert order["customer_id"] == world.account("alice").id
    payment = await world.ok(Call("payments", "GET", "/payments/{alice_payment}", "alice"), 200)
    assert "provider_reference" not in payment
    staff_view = await world.ok(Call("payments", "GET", "/payments/{alice_payment}", "staff"), 200)
    assert staff_view["provider_reference"] == "psp_alice_secret"
    project = await world.ok(Call("projects", "GET", "/projects/{ann_project}", "ann"), 200)
    assert project["tenant_id"] == world.account("ann").tenant


# Reads of cached entities, each sent three times: the first may fill the cache through
# the route, the others are answered before routing (runtime.cache.hits). In this order,
# Alice's order is cached by the time Bob asks for it, the staff view of a draft before
# the anonymous one, Ann's project before Ben's.
CACHED_READS = [
    Call("catalog", "GET", "/products/{product}"),
    Call("catalog", "GET", "/products/{draft}", "staff"),
    Call("catalog", "GET", "/products/{draft}"),
    Call("catalog", "GET", "/products/{draft}", "alice"),
    Call("catalog", "GET", "/products", "staff"),
    Call("catalog", "GET", "/products"),
    Call("catalog", "GET", "/products", params={"status": "draft"}),
    Call("catalog", "GET", "/products", params={"sort": "-price", "limit": "1"}),
    Call("catalog", "GET", "/products", params={"limit": "0"}),
    Call("catalog", "GET", "/products/{guessed_id}"),
    Call("catalog", "GET", "/products/not-a-uuid"),
    Call("catalog", "GET", "/products/{product}", token=alg_none),
    Call("catalog", "GET", "/products/{product}", token=tampered_roles),
    Call("catalog", "GET", "/categories/{category}"),
    Call("catalog", "GET", "/categories", "staff"),
    Call("orders", "GET", "/orders/{alice_order}", "alice"),
    Call("orders", "GET", "/orders/{alice_order}", "bob"),
    Call("orders", "GET", "/orders/{alice_order}"),
    Call("orders", "GET", "/orders/{alice_order}", "bot"),
    Call("orders", "GET", "/orders/{alice_order}", "staff"),
    Call("orders", "GET", "/orders", "alice"),
    Call("orders", "GET", "/orders", "bob"),
    Call("orders", "GET", "/orders"),
    Call("projects", "GET", "/projects/{ann_project}", "ann"),
    Call("projects", "GET", "/projects/{ann_project}", "ben"),
    Call("projects", "GET", "/projects/{ann_project}", "ben_admin"),
    Call("projects", "GET", "/projects", "ann"),
    Call("projects", "GET", "/projects", "ben"),
]
_COMPARED_HEADERS = ("content-type", "etag", "cache-control", "vary", "www-authenticate")


@pytest.mark.asyncio(loop_scope="module")
async def test_cache_hits_answer_exactly_as_the_routes_do(world: World) -> None:
    def early() -> int:
        return sum(
            repo.cache.stats.served_early
            for service in world.services.values()
            if (caching := getattr(service.app.state, "caching", None)) is not None
            for repo in caching.repositories.values()
        )

    before = early()
    for call in CACHED_READS:
        first, *again = [await world.send(call) for _ in range(3)]
        for response in again:
            assert response.status_code == first.status_code, (call, response.text)
            assert response.content == first.content, call
            for header in _COMPARED_HEADERS:
                assert response.headers.get(header) == first.headers.get(header), (call, header)
    # The order Bob asked for was in the cache, and he still got a 404.
    bob = await world.send(Call("orders", "GET", "/orders/{alice_order}", "bob"))
    assert bob.status_code == 404
    assert early() - before >= 20  # most repeats were served before routing
