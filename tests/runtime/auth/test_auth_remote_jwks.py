"""RemoteJwks: fetching, caching and refetching the identity service's keys over HTTP.

The JWKS is served by an in-process ASGI app (or, for "unreachable", nobody at all).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.auth_tokens import AUDIENCE, ISSUER, JWKS_URL, FakeClock, JwksServer

from microforge.runner.ports import free_port
from microforge.runtime.auth.keys import KeyStore, b64url, public_jwk_members, thumbprint
from microforge.runtime.auth.tokens import (
    InvalidJwks,
    InvalidToken,
    KeysUnavailable,
    RemoteJwks,
    StaticJwks,
    TokenIssuer,
    TokenVerifier,
    parse_jwks,
)

TTL = 300
MIN_INTERVAL = 10


@dataclass
class Remote:
    store: KeyStore
    clock: FakeClock
    server: JwksServer
    jwks: RemoteJwks
    verifier: TokenVerifier

    def token(self, subject: str = "u1") -> str:
        return TokenIssuer(self.store, ISSUER, AUDIENCE, clock=self.clock).issue(
            subject, "user", []
        )[0]


@pytest.fixture
async def remote(tmp_path: Path) -> AsyncIterator[Remote]:
    store = KeyStore.ensure(tmp_path / "keys")
    clock = FakeClock()
    server = JwksServer(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app)) as http:
        jwks = RemoteJwks(
            JWKS_URL, ttl=TTL, min_refresh_interval=MIN_INTERVAL, client=http, clock=clock
        )
        verifier = TokenVerifier(jwks, ISSUER, AUDIENCE, clock=clock)
        yield Remote(store, clock, server, jwks, verifier)


async def test_keys_are_fetched_once_and_cached(remote: Remote) -> None:
    for subject in ("a", "b", "c"):
        await remote.verifier.verify(remote.token(subject))
    assert remote.server.fetches == 1


async def test_keys_are_refetched_after_the_ttl(remote: Remote) -> None:
    key = await remote.jwks.key(remote.store.signing_key.kid)
    assert key is not None
    remote.clock.now += TTL - 1
    await remote.jwks.key(remote.store.signing_key.kid)
    assert remote.server.fetches == 1
    remote.clock.now += 1
    await remote.jwks.key(remote.store.signing_key.kid)
    assert remote.server.fetches == 2


async def test_rotation_reaches_the_verifier_by_refetch(remote: Remote) -> None:
    old = remote.token("old")
    assert (await remote.verifier.verify(old)).subject == "old"

    remote.store.rotate()
    new = remote.token("new")
    # Within the minimum interval an unknown kid does not trigger another fetch...
    remote.clock.now += MIN_INTERVAL - 1
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await remote.verifier.verify(new)
    assert remote.server.fetches == 1
    # ...after it, one fetch finds the new key; the old key is still published.
    remote.clock.now += 1
    assert (await remote.verifier.verify(new)).subject == "new"
    assert remote.server.fetches == 2
    assert (await remote.verifier.verify(old)).subject == "old"


async def test_random_kids_cannot_make_it_hammer_the_identity_service(remote: Remote) -> None:
    await remote.jwks.key(remote.store.signing_key.kid)
    for n in range(50):
        assert await remote.jwks.key(f"random-{n}") is None
        remote.clock.now += 0.1
    # 5 seconds of random kids: no refetch, as the minimum interval is 10.
    assert remote.server.fetches == 1


async def test_concurrent_verifications_share_one_fetch(remote: Remote) -> None:
    tokens = [remote.token(f"u{n}") for n in range(20)]
    principals = await asyncio.gather(*(remote.verifier.verify(t) for t in tokens))
    assert [p.subject for p in principals] == [f"u{n}" for n in range(20)]
    assert remote.server.fetches == 1


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"status": 500}, id="server-error"),
        pytest.param({"status": 404}, id="not-found"),
        pytest.param({"document": b"<html>oops</html>"}, id="not-json"),
        pytest.param({"document": {"keys": "none"}}, id="keys-not-a-list"),
        pytest.param({"document": ["not", "an", "object"]}, id="not-an-object"),
        pytest.param({"document": b"x" * 300_000}, id="too-large"),
    ],
)
async def test_fetch_failure_keeps_the_cached_keys(remote: Remote, failure: dict[str, Any]) -> None:
    token = remote.token()
    await remote.verifier.verify(token)
    fresh = remote.token("fresh")  # not cached by the verifier yet
    remote.server.status = failure.get("status", 200)
    remote.server.document = failure.get("document")

    remote.clock.now += TTL
    assert (await remote.verifier.verify(fresh)).subject == "fresh"
    assert remote.server.fetches == 2
    # A failed fetch is retried after the minimum interval, not on every request.
    assert await remote.jwks.key(remote.store.signing_key.kid) is not None
    assert remote.server.fetches == 2
    remote.clock.now += MIN_INTERVAL
    remote.server.status, remote.server.document = 200, None
    assert await remote.jwks.key(remote.store.signing_key.kid) is not None
    assert remote.server.fetches == 3


async def test_no_keys_ever_fetched_is_keys_unavailable(remote: Remote) -> None:
    remote.server.status = 503
    with pytest.raises(KeysUnavailable):
        await remote.verifier.verify(remote.token())
    assert isinstance(KeysUnavailable("x"), InvalidToken)
    # Once the identity service is back (after the minimum interval) it recovers.
    remote.server.status = 200
    remote.clock.now += MIN_INTERVAL
    assert (await remote.verifier.verify(remote.token())).subject == "u1"


async def test_unreachable_identity_service_is_keys_unavailable(tmp_path: Path) -> None:
    store = KeyStore.ensure(tmp_path)
    token, _ = TokenIssuer(store, ISSUER, AUDIENCE).issue("u1", "user", [])
    jwks = RemoteJwks(f"http://127.0.0.1:{free_port()}/.well-known/jwks.json", timeout=2)
    verifier = TokenVerifier(jwks, ISSUER, AUDIENCE)
    try:
        with pytest.raises(KeysUnavailable):
            await verifier.verify(token)
    finally:
        await verifier.aclose()


def _raw_x(key: Ed25519PrivateKey) -> str:
    return b64url(
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def _foreign_keys() -> list[Any]:
    """JWKs a verifier must skip: other key types, other uses, private or broken keys."""
    rsa_public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    numbers = rsa_public.public_numbers()
    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()

    def int_b64(value: int) -> str:
        return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    ed = Ed25519PrivateKey.generate()
    private_bytes = ed.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return [
        {"kty": "RSA", "kid": "rsa", "n": int_b64(numbers.n), "e": int_b64(numbers.e)},
        {
            "kty": "EC",
            "kid": "ec",
            "crv": "P-256",
            "x": int_b64(ec_public.x),
            "y": int_b64(ec_public.y),
        },
        {"kty": "oct", "kid": "oct", "k": b64url(b"shared secret")},
        {"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": _raw_x(ed)},
        {"kty": "OKP", "kid": "enc", "crv": "Ed25519", "x": _raw_x(ed), "use": "enc"},
        {"kty": "OKP", "kid": "other-alg", "crv": "Ed25519", "x": _raw_x(ed), "alg": "HS256"},
        {
            "kty": "OKP",
            "kid": "private",
            "crv": "Ed25519",
            "x": _raw_x(ed),
            "d": b64url(private_bytes),
        },
        {"kty": "OKP", "kid": "short-x", "crv": "Ed25519", "x": b64url(b"123")},
        {"kty": "OKP", "kid": "x-not-str", "crv": "Ed25519", "x": 5},
        {"kty": "OKP", "crv": "Ed25519", "x": _raw_x(ed)},  # no kid
        "not a key",
        None,
    ]


def test_only_ed25519_signing_keys_are_kept(tmp_path: Path) -> None:
    store = KeyStore.ensure(tmp_path)
    document = {"keys": [*_foreign_keys(), *store.jwks()["keys"]]}
    assert list(parse_jwks(document)) == [store.signing_key.kid]


async def test_remote_jwks_ignores_foreign_keys(remote: Remote) -> None:
    remote.server.document = {"keys": [*_foreign_keys(), *remote.store.jwks()["keys"]]}
    assert (await remote.verifier.verify(remote.token())).subject == "u1"
    for kid in ("rsa", "ec", "oct", "x25519", "enc", "other-alg", "private", "short-x"):
        assert await remote.jwks.key(kid) is None


@pytest.mark.parametrize(
    "document",
    [[], "keys", {"keys": {"a": 1}}, {"keys": None}, {}, None],
    ids=["list", "string", "keys-object", "keys-null", "empty-object", "null"],
)
def test_a_document_that_is_not_a_jwks_is_refused(document: Any) -> None:
    with pytest.raises(InvalidJwks):
        parse_jwks(document)
    with pytest.raises(InvalidJwks):
        StaticJwks({"keys": document} if document is None else {"not_keys": document})


def test_thumbprint_matches_the_published_x() -> None:
    key = Ed25519PrivateKey.generate()
    members = public_jwk_members(key.public_key())
    assert members["x"] == _raw_x(key)
    assert len(base64.urlsafe_b64decode(members["x"] + "=")) == 32
    assert len(thumbprint(key.public_key())) == 43  # 32 bytes, base64url without padding
