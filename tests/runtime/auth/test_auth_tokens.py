"""TokenIssuer and TokenVerifier: what is accepted, everything that must be refused, the cache.

The verifier under attack fetches its keys from a JWKS endpoint (an in-process ASGI
app), with refetching on an unknown kid allowed at any time, so "unknown kid" means
unknown even after asking the identity service again.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.auth_tokens import (
    AUDIENCE,
    ISSUER,
    JWKS_URL,
    MISSING,
    CountingJwks,
    FakeClock,
    JwksServer,
    b64json,
    b64url,
    compact,
    decode_part,
    standard_claims,
)

from microforge.runtime.auth.keys import KeyStore, thumbprint
from microforge.runtime.auth.principal import Principal
from microforge.runtime.auth.tokens import (
    MAX_TOKEN_LENGTH,
    InvalidToken,
    RemoteJwks,
    StaticJwks,
    TokenIssuer,
    TokenVerifier,
)


@dataclass
class World:
    store: KeyStore
    clock: FakeClock
    server: JwksServer
    issuer: TokenIssuer
    verifier: TokenVerifier

    @property
    def kid(self) -> str:
        return self.store.signing_key.kid

    def header(self, **overrides: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": "EdDSA", "typ": "at+jwt", "kid": self.kid}
        for name, value in overrides.items():
            if value is MISSING:
                header.pop(name, None)
            else:
                header[name] = value
        return header

    def claims(self, **overrides: Any) -> dict[str, Any]:
        return standard_claims(self.clock.now, **overrides)

    def signed(
        self,
        claims: Any = None,
        header: Any = None,
        key: Ed25519PrivateKey | None = None,
    ) -> str:
        """Signed with our real key unless told otherwise: only the named flaw differs."""
        signer = key or self.store.signing_key.private_key
        return compact(
            self.header() if header is None else header,
            self.claims() if claims is None else claims,
            signer.sign,
        )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = KeyStore.ensure(tmp_path / "keys")
    clock = FakeClock()
    server = JwksServer(store)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app))
    jwks = RemoteJwks(JWKS_URL, min_refresh_interval=0, client=http, clock=clock)
    verifier = TokenVerifier(jwks, ISSUER, AUDIENCE, clock=clock)
    issuer = TokenIssuer(store, ISSUER, AUDIENCE, access_ttl=900, clock=clock)
    try:
        yield World(store, clock, server, issuer, verifier)
    finally:
        await verifier.aclose()
        await http.aclose()


# -- accepted ---------------------------------------------------------------------------


async def test_issued_token_verifies_to_its_principal(world: World) -> None:
    token, expires_at = world.issuer.issue("user-1", "user", ["member", "admin", "member"])
    assert expires_at == int(world.clock.now) + 900

    principal = await world.verifier.verify(token)

    assert principal.subject == "user-1"
    assert principal.kind == "user"
    assert principal.roles == frozenset({"member", "admin"})
    assert principal.tenant is None
    assert principal.expires_at == expires_at
    assert principal.token_id
    assert principal.authenticated


async def test_issued_token_has_the_agreed_shape(world: World) -> None:
    token, _ = world.issuer.issue("apikey:42", "client", ["sync"], tenant="t-9")
    header_part, payload_part, _ = token.split(".")
    assert decode_part(header_part) == {"alg": "EdDSA", "typ": "at+jwt", "kid": world.kid}
    claims = decode_part(payload_part)
    assert set(claims) == {
        "iss",
        "aud",
        "sub",
        "iat",
        "nbf",
        "exp",
        "jti",
        "kind",
        "roles",
        "tenant",
    }
    assert (claims["iss"], claims["aud"], claims["kind"]) == (ISSUER, AUDIENCE, "client")


async def test_client_token_with_tenant(world: World) -> None:
    token, _ = world.issuer.issue("apikey:42", "client", ["sync"], tenant="t-9")
    principal = await world.verifier.verify(token)
    assert principal == Principal(
        subject="apikey:42",
        kind="client",
        roles=frozenset({"sync"}),
        tenant="t-9",
        token_id=principal.token_id,
        expires_at=world.clock.now + 900,
    )


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param({"aud": ["urn:other", AUDIENCE]}, id="audience-list"),
        pytest.param({"exp": "clock-20"}, id="expired-within-leeway"),
        pytest.param({"nbf": "clock+20", "iat": "clock+20"}, id="nbf-within-leeway"),
        pytest.param({"roles": []}, id="no-roles"),
        pytest.param({"jti": MISSING}, id="no-jti"),
    ],
)
async def test_acceptable_variants(world: World, variant: dict[str, Any]) -> None:
    claims = world.claims(**{k: _relative(world, v) for k, v in variant.items()})
    principal = await world.verifier.verify(world.signed(claims))
    assert principal.subject == claims["sub"]


async def test_application_at_jwt_type_is_accepted(world: World) -> None:
    token = world.signed(header=world.header(typ="application/AT+JWT"))
    assert (await world.verifier.verify(token)).kind == "user"


def test_issuer_refuses_an_anonymous_token(world: World) -> None:
    with pytest.raises(ValueError, match="anonymous"):
        world.issuer.issue("", "anonymous", [])


def _relative(world: World, value: Any) -> Any:
    if isinstance(value, str) and value.startswith("clock"):
        return int(world.clock.now) + int(value[len("clock") :])
    return value


# -- refused ----------------------------------------------------------------------------


def _other_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def forged_signature(w: World) -> str:
    return w.signed(key=_other_key())  # header still names our kid


def expired(w: World) -> str:
    now = int(w.clock.now)
    return w.signed(w.claims(iat=now - 1000, nbf=now - 1000, exp=now - 31))


def not_yet_valid(w: World) -> str:
    return w.signed(w.claims(nbf=int(w.clock.now) + 300))


def issued_in_future(w: World) -> str:
    return w.signed(w.claims(iat=int(w.clock.now) + 300))


def wrong_audience(w: World) -> str:
    return w.signed(w.claims(aud="urn:microforge:other"))


def wrong_audience_list(w: World) -> str:
    return w.signed(w.claims(aud=["urn:microforge:other", "urn:x"]))


def wrong_issuer(w: World) -> str:
    return w.signed(w.claims(iss="urn:microforge:evil:identity"))


def tampered_payload(w: World) -> str:
    header, _, signature = w.signed().split(".")
    payload = b64json(w.claims(roles=["admin"]))
    return f"{header}.{payload}.{signature}"


def tampered_header(w: World) -> str:
    _, payload, signature = w.signed().split(".")
    # Still a header we would accept, so only the signature can catch the change.
    return f"{b64json(w.header(typ='application/at+jwt'))}.{payload}.{signature}"


def alg_none(w: World) -> str:
    return compact(w.header(alg="none"), w.claims(), lambda _: b"")


def alg_none_no_signature_part(w: World) -> str:
    return compact(w.header(alg="none"), w.claims(), lambda _: b"")[:-1]


def _public_pem(w: World) -> bytes:
    return w.store.signing_key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def hs256_with_public_pem(w: World) -> str:
    secret = _public_pem(w)
    return compact(
        w.header(alg="HS256"),
        w.claims(),
        lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )


def hs256_with_public_x(w: World) -> str:
    secret = w.store.signing_key.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return compact(
        w.header(alg="HS256"),
        w.claims(),
        lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )


def rs256(w: World) -> str:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return compact(
        w.header(alg="RS256"),
        w.claims(),
        lambda data: rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256()),
    )


def eddsa_header_other_alg_claimed(w: World) -> str:
    return w.signed(header=w.header(alg="ES256"))


def unknown_kid(w: World) -> str:
    stranger = _other_key()
    return w.signed(header=w.header(kid=thumbprint(stranger.public_key())), key=stranger)


def kid_missing(w: World) -> str:
    return w.signed(header=w.header(kid=MISSING))


def kid_not_a_string(w: World) -> str:
    return w.signed(header=w.header(kid=7))


def _without(claim: str) -> Callable[[World], str]:
    def make(w: World) -> str:
        return w.signed(w.claims(**{claim: MISSING}))

    make.__name__ = f"missing_{claim}"
    return make


def _with(claim: str, value: Any) -> Callable[[World], str]:
    def make(w: World) -> str:
        return w.signed(w.claims(**{claim: value}))

    return make


def typ_missing(w: World) -> str:
    return w.signed(header=w.header(typ=MISSING))


def typ_jwt(w: World) -> str:
    return w.signed(header=w.header(typ="JWT"))


def crit_header(w: World) -> str:
    return w.signed(header=w.header(crit=["exp"]))


def unencoded_payload(w: World) -> str:
    return w.signed(header=w.header(b64=False, crit=["b64"]))


def embedded_jwk(w: World) -> str:
    # A token may not bring its own key along.
    stranger = _other_key()
    raw = stranger.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    return w.signed(header=w.header(jwk=jwk), key=stranger)


def header_not_an_object(w: World) -> str:
    return w.signed(header=["EdDSA"])


def payload_not_an_object(w: World) -> str:
    return w.signed(claims=["admin"])


def oversized(w: World) -> str:
    # Properly signed: only its size is wrong.
    token = w.signed(w.claims(padding="x" * MAX_TOKEN_LENGTH))
    assert len(token) > MAX_TOKEN_LENGTH
    return token


def _literal(text: str) -> Callable[[World], str]:
    return lambda w: text


ATTACKS: dict[str, Callable[[World], str]] = {
    "forged-signature": forged_signature,
    "expired": expired,
    "nbf-in-future": not_yet_valid,
    "iat-in-future": issued_in_future,
    "wrong-audience": wrong_audience,
    "wrong-audience-list": wrong_audience_list,
    "wrong-issuer": wrong_issuer,
    "tampered-payload": tampered_payload,
    "tampered-header": tampered_header,
    "alg-none": alg_none,
    "alg-none-no-signature": alg_none_no_signature_part,
    "hs256-public-key-pem": hs256_with_public_pem,
    "hs256-public-key-raw": hs256_with_public_x,
    "rs256": rs256,
    "eddsa-signed-but-header-says-es256": eddsa_header_other_alg_claimed,
    "unknown-kid": unknown_kid,
    "kid-missing": kid_missing,
    "kid-not-a-string": kid_not_a_string,
    "missing-exp": _without("exp"),
    "missing-sub": _without("sub"),
    "missing-iss": _without("iss"),
    "missing-aud": _without("aud"),
    "missing-iat": _without("iat"),
    "missing-nbf": _without("nbf"),
    "missing-kind": _without("kind"),
    "missing-roles": _without("roles"),
    "roles-a-string": _with("roles", "admin"),
    "roles-not-strings": _with("roles", ["admin", 1]),
    "roles-an-object": _with("roles", {"admin": True}),
    "kind-unknown": _with("kind", "admin"),
    "kind-anonymous": _with("kind", "anonymous"),
    "sub-a-number": _with("sub", 42),
    "sub-empty": _with("sub", ""),
    "tenant-a-number": _with("tenant", 3),
    "tenant-null": _with("tenant", None),
    "exp-a-string": _with("exp", "2099-01-01"),
    "exp-a-boolean": _with("exp", True),
    "jti-a-number": _with("jti", 5),
    "typ-missing": typ_missing,
    "typ-jwt": typ_jwt,
    "crit-header": crit_header,
    "unencoded-payload": unencoded_payload,
    "embedded-jwk": embedded_jwk,
    "header-not-an-object": header_not_an_object,
    "payload-not-an-object": payload_not_an_object,
    "oversized": oversized,
    "empty": _literal(""),
    "garbage-word": _literal("garbage"),
    "garbage-three-parts": _literal("a.b.c"),
    "garbage-dots": _literal(".."),
    "garbage-base64-json": _literal("eyJ9.eyJ9.eyJ9"),
    "garbage-two-parts": _literal("eyJhbGciOiJFZERTQSJ9.e30"),
    "garbage-binary": _literal("\x00\xff\u2603.\x00.\x00"),
    "garbage-whitespace": _literal("   "),
}


@pytest.mark.parametrize("attack", list(ATTACKS), ids=list(ATTACKS))
async def test_attack_is_refused(world: World, attack: str) -> None:
    token = ATTACKS[attack](world)
    with pytest.raises(InvalidToken):
        await world.verifier.verify(token)
    # Refusals are not cached: the second try is refused the same way.
    with pytest.raises(InvalidToken):
        await world.verifier.verify(token)


async def test_unknown_kid_is_refetched_then_refused(world: World) -> None:
    await world.verifier.verify(world.issuer.issue("u", "user", [])[0])
    before = world.server.fetches
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await world.verifier.verify(unknown_kid(world))
    assert world.server.fetches == before + 1


async def test_oversized_token_is_refused_before_parsing(world: World) -> None:
    jwks = CountingJwks(StaticJwks(world.store.jwks()))
    verifier = TokenVerifier(jwks, ISSUER, AUDIENCE, clock=world.clock)
    with pytest.raises(InvalidToken, match="too long"):
        await verifier.verify(oversized(world))
    assert jwks.lookups == 0


# -- the cache --------------------------------------------------------------------------


@pytest.fixture
def counted(world: World) -> tuple[TokenVerifier, CountingJwks]:
    jwks = CountingJwks(StaticJwks(world.store.jwks()))
    return TokenVerifier(jwks, ISSUER, AUDIENCE, clock=world.clock, cache_size=2), jwks


async def test_cache_hit_skips_verification(
    world: World, counted: tuple[TokenVerifier, CountingJwks]
) -> None:
    verifier, jwks = counted
    token, _ = world.issuer.issue("u1", "user", ["member"])
    first = await verifier.verify(token)
    for _ in range(5):
        assert await verifier.verify(token) is first
    assert jwks.lookups == 1


async def test_cache_does_not_outlive_the_token(
    world: World, counted: tuple[TokenVerifier, CountingJwks]
) -> None:
    verifier, _ = counted
    token, expires_at = world.issuer.issue("u1", "user", [])
    await verifier.verify(token)
    # Within the leeway a fresh verification would accept it, so the cache may too...
    world.clock.now = expires_at + 29
    assert (await verifier.verify(token)).subject == "u1"
    # ...but not a moment after.
    world.clock.now = expires_at + 30
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token)


async def test_cache_is_bounded_and_least_recently_used_goes(
    world: World, counted: tuple[TokenVerifier, CountingJwks]
) -> None:
    verifier, jwks = counted
    t1, t2, t3 = (world.issuer.issue(f"u{i}", "user", [])[0] for i in (1, 2, 3))
    await verifier.verify(t1)
    await verifier.verify(t2)
    await verifier.verify(t1)  # t1 is now the most recent, t2 the least
    await verifier.verify(t3)  # evicts t2
    assert jwks.lookups == 3
    await verifier.verify(t1)
    await verifier.verify(t3)
    assert jwks.lookups == 3
    await verifier.verify(t2)
    assert jwks.lookups == 4


async def test_a_different_token_for_the_same_user_is_verified_on_its_own(
    world: World, counted: tuple[TokenVerifier, CountingJwks]
) -> None:
    verifier, _ = counted
    token, _ = world.issuer.issue("u1", "user", ["member"])
    await verifier.verify(token)
    with pytest.raises(InvalidToken):
        await verifier.verify(tampered_payload(world))


def test_pyjwt_alone_would_accept_our_tokens(world: World) -> None:
    """Sanity check of the hand-made tokens: the baseline really is a valid token."""
    key = jwt.PyJWK(world.store.jwks()["keys"][0])
    claims = jwt.decode(
        world.signed(),
        key,
        algorithms=["EdDSA"],
        audience=AUDIENCE,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert claims["iss"] == ISSUER
