"""Helpers for the access-token tests: a settable clock, a JWKS endpoint, hand-made JWTs.

Tokens are assembled here by hand (not with PyJWT) so the tests can produce exactly the
malformed and forged tokens an attacker would, independently of the code under test.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from microforge.runtime.auth.keys import KeyStore

ISSUER = "urn:microforge:shop:identity"
AUDIENCE = "urn:microforge:shop"
JWKS_URL = "http://identity.test/.well-known/jwks.json"


class FakeClock:
    """A clock the test moves by hand: `clock.now += 60`."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class JwksServer:
    """An ASGI app serving a KeyStore's JWKS, counting fetches.

    `document` replaces the published document (a broken one, say); `status` != 200
    makes the endpoint fail.
    """

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.fetches = 0
        self.status = 200
        self.document: Any = None
        self.app = Starlette(routes=[Route("/.well-known/jwks.json", self._jwks)])

    async def _jwks(self, request: Request) -> Response:
        self.fetches += 1
        if self.status != 200:
            return Response("down", status_code=self.status)
        if isinstance(self.document, bytes):
            return Response(self.document, media_type="application/json")
        document = self.document if self.document is not None else self.store.jwks()
        return JSONResponse(document)


class CountingJwks:
    """A JwksSource wrapper that counts key lookups (to see the cache at work)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lookups = 0

    async def key(self, kid: str) -> jwt.PyJWK | None:
        self.lookups += 1
        result: jwt.PyJWK | None = await self.inner.key(kid)
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def compact(header: Any, payload: Any, sign: Callable[[bytes], bytes]) -> str:
    """A JWS in compact form; `sign` gets the signing input and returns the signature."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    return f"{signing_input}.{b64url(sign(signing_input.encode('ascii')))}"


def decode_part(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def standard_claims(now: float, **overrides: Any) -> dict[str, Any]:
    """The claims our issuer writes; an override of MISSING drops the claim."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "7d3f4a0e-58a2-4f0e-9a34-1f1a2b3c4d5e",
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + 900,
        "jti": "token-1",
        "kind": "user",
        "roles": ["member"],
    }
    for name, value in overrides.items():
        if value is MISSING:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


MISSING = object()
