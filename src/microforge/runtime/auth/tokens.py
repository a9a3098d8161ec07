"""Issuing and verifying EdDSA access tokens (JWT, `typ: at+jwt`).

The verifier is on every authenticated request, so a token it has already verified is
kept in a bounded LRU cache until the token expires: a repeat costs a dict lookup and
a clock read instead of an Ed25519 verification.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .keys import KeyStore
from .principal import Principal, PrincipalKind

log = logging.getLogger("microforge.auth.tokens")

TOKEN_TYPE = "at+jwt"
ALGORITHM = "EdDSA"
MAX_TOKEN_LENGTH = 8 * 1024
DEFAULT_LEEWAY = 30.0
_REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub"]
# Only what our issuer writes: no crit/b64/jku/x5u or anything else to interpret.
_ALLOWED_HEADER = frozenset({"alg", "typ", "kid"})
_TOKEN_KINDS = frozenset({"user", "client"})
_MAX_JWKS_BYTES = 256 * 1024

Clock = Callable[[], float]


class InvalidToken(Exception):
    """The token cannot be accepted; `reason` is for logs, never for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysUnavailable(InvalidToken):
    """No signing keys could be obtained, so nothing can be verified right now.

    An InvalidToken for callers that only care about accept/refuse; an HTTP layer may
    answer 503 instead of 401 so clients do not throw away good tokens.
    """


# -- issuing ----------------------------------------------------------------------------


class TokenIssuer:
    """Signs access tokens with the newest key of a KeyStore."""

    def __init__(
        self,
        keys: KeyStore,
        issuer: str,
        audience: str,
        access_ttl: int = 900,
        *,
        clock: Clock = time.time,
    ) -> None:
        if access_ttl <= 0:
            raise ValueError("access_ttl must be a positive number of seconds")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self._clock = clock

    def issue(
        self,
        subject: str,
        kind: PrincipalKind,
        roles: Iterable[str],
        tenant: str | None = None,
    ) -> tuple[str, int]:
        """Return `(token, expires_at)`, expires_at in POSIX seconds."""
        if kind not in _TOKEN_KINDS:
            raise ValueError(f"cannot issue a token of kind {kind!r}")
        now = int(self._clock())
        expires_at = now + self.access_ttl
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": expires_at,
            "jti": secrets.token_urlsafe(16),
            "kind": kind,
            "roles": sorted(set(roles)),
        }
        if tenant is not None:
            claims["tenant"] = tenant
        key = self.keys.signing_key
        token = jwt.encode(
            claims,
            key.private_key,
            algorithm=ALGORITHM,
            headers={"typ": TOKEN_TYPE, "kid": key.kid},
        )
        return token, expires_at


# -- key sources ------------------------------------------------------------------------


class JwksSource(Protocol):
    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The Ed25519 public key with this kid, or None when there is none."""
        ...

    async def aclose(self) -> None: ...


class InvalidJwks(ValueError):
    """A JWKS document that is not `{"keys": [...]}`."""


def parse_jwks(document: object) -> dict[str, jwt.PyJWK]:
    """The usable keys of a JWKS document by kid.

    Keys that are not Ed25519 public signing keys are skipped (a JWKS may also publish
    keys for other uses); a document that is not a JWKS at all raises InvalidJwks.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise InvalidJwks('a JWKS must be a JSON object with a "keys" array')
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        parsed = _parse_jwk(entry)
        if parsed is not None:
            keys.setdefault(parsed[0], parsed[1])
    return keys


def _parse_jwk(entry: object) -> tuple[str, jwt.PyJWK] | None:
    if not isinstance(entry, dict):
        return None
    kid = entry.get("kid")
    if (
        not isinstance(kid, str)
        or not kid
        or entry.get("kty") != "OKP"
        or entry.get("crv") != "Ed25519"
        or entry.get("alg", ALGORITHM) != ALGORITHM
        or entry.get("use", "sig") != "sig"
        or "d" in entry  # private material has no business in a published set
        or not isinstance(entry.get("x"), str)
    ):
        return None
    try:
        key = jwt.PyJWK(entry, algorithm=ALGORITHM)
    except jwt.PyJWTError:
        return None
    if not isinstance(key.key, Ed25519PublicKey):
        return None
    return kid, key


class StaticJwks:
    """A fixed JWK set (tests, or a service that signs and verifies its own tokens)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = parse_jwks(dict(jwks))

    async def key(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)

    async def aclose(self) -> None:
        return None


class RemoteJwks:
    """The JWKS of the identity service, fetched over HTTP and cached for `ttl` seconds.

    An unknown kid triggers a refetch (that is how a key rotation reaches us), at most
    once per `min_refresh_interval` so random kids cannot make us hammer the identity
    service. When a fetch fails the keys already known stay in use.
    """

    def __init__(
        self,
        url: str,
        ttl: float = 300,
        min_refresh_interval: float = 10,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self._given_client = client
        self._own_client: httpx.AsyncClient | None = None
        self._timeout = timeout
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = False  # at least one successful fetch
        self._fresh_until = float("-inf")
        self._last_attempt = float("-inf")
        self._attempts = 0  # fetches started; tells waiters a fetch ran while they waited
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        if self._clock() >= self._fresh_until:
            await self._refresh(seen=self._attempts)
        key = self._keys.get(kid)
        if key is None and self._clock() - self._last_attempt >= self.min_refresh_interval:
            await self._refresh(seen=self._attempts)
            key = self._keys.get(kid)
        if key is None and not self._fetched:
            raise KeysUnavailable(f"the JWKS at {self.url} could not be fetched")
        return key

    async def _refresh(self, *, seen: int) -> None:
        async with self._lock:
            # Single flight: whoever waited for the lock uses the fetch that just ran.
            if self._attempts != seen:
                return
            self._attempts += 1
            self._last_attempt = self._clock()
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, httpx.InvalidURL, InvalidJwks) as exc:
                log.warning("cannot fetch the JWKS from %s: %s", self.url, exc)
                # Retry after the minimum interval, not on every request.
                self._fresh_until = self._last_attempt + self.min_refresh_interval
                return
            self._keys = keys
            self._fetched = True
            self._fresh_until = self._last_attempt + self.ttl

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        client = self._client()
        async with client.stream("GET", self.url, headers={"accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise InvalidJwks(f"HTTP status {resp.status_code}")
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > _MAX_JWKS_BYTES:
                    raise InvalidJwks("the document is too large")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidJwks(f"not JSON ({exc})") from exc
        return parse_jwks(document)

    def _client(self) -> httpx.AsyncClient:
        if self._given_client is not None:
            return self._given_client
        if self._own_client is None:
            self._own_client = httpx.AsyncClient(
                timeout=self._timeout, follow_redirects=False, trust_env=False
            )
        return self._own_client

    async def aclose(self) -> None:
        """Close the HTTP client we made (a client passed in belongs to the caller)."""
        if self._own_client is not None:
            client, self._own_client = self._own_client, None
            await client.aclose()


# -- verifying --------------------------------------------------------------------------


class TokenVerifier:
    """Checks access tokens and turns them into Principals.

    A verified token stays accepted until it expires, even if its key is pruned from the
    JWKS meanwhile: access tokens are short-lived and not revocable by design.
    """

    def __init__(
        self,
        jwks: JwksSource,
        issuer: str,
        audience: str,
        *,
        leeway: float = DEFAULT_LEEWAY,
        cache_size: int = 10_000,
        clock: Clock = time.time,
    ) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.cache_size = cache_size
        self._clock = clock
        # token -> (principal, moment the token stops verifying)
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        """The Principal the token speaks for; InvalidToken when it must be refused."""
        hit = self._cache.get(token)
        if hit is not None:
            if hit[1] > self._clock():
                self._cache.move_to_end(token)
                return hit[0]
            del self._cache[token]
        principal, exp = await self._verify_uncached(token)
        # Until the moment a fresh verification would refuse it, and not a second longer.
        self._cache[token] = (principal, exp + self.leeway)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return principal

    async def _verify_uncached(self, token: str) -> tuple[Principal, float]:
        if not isinstance(token, str) or not token:
            raise InvalidToken("empty token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token ({exc})") from None
        kid = _check_header(header)
        key = await self.jwks.key(kid)
        if key is None:
            raise InvalidToken("unknown signing key")
        if key.algorithm_name != ALGORITHM or not isinstance(key.key, Ed25519PublicKey):
            raise InvalidToken("the signing key is not an Ed25519 key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": _REQUIRED_CLAIMS,
                    # Times are checked below against our own clock, the one the cache
                    # uses too, so a cached and a fresh verification always agree.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"rejected: {exc}") from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> tuple[Principal, float]:
        now = self._clock()
        exp = _number(claims, "exp")
        if exp <= now - self.leeway:
            raise InvalidToken("expired")
        if _number(claims, "nbf") > now + self.leeway:
            raise InvalidToken("not valid yet (nbf)")
        if _number(claims, "iat") > now + self.leeway:
            raise InvalidToken("issued in the future (iat)")
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("sub must be a non-empty string")
        kind = claims.get("kind")
        if kind not in _TOKEN_KINDS:
            raise InvalidToken("kind must be 'user' or 'client'")
        roles = claims.get("roles")
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise InvalidToken("roles must be a list of strings")
        tenant = claims.get("tenant")
        if "tenant" in claims and not isinstance(tenant, str):
            raise InvalidToken("tenant must be a string")
        token_id = claims.get("jti")
        if token_id is not None and not isinstance(token_id, str):
            raise InvalidToken("jti must be a string")
        principal = Principal(
            subject=subject,
            kind=kind,
            roles=frozenset(roles),
            tenant=tenant,
            token_id=token_id,
            expires_at=exp,
        )
        return principal, exp

    async def aclose(self) -> None:
        await self.jwks.aclose()


def _check_header(header: dict[str, Any]) -> str:
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("algorithm must be EdDSA")
    typ = header.get("typ")
    # RFC 9068 §4: "at+jwt", media types compare case-insensitively.
    if not isinstance(typ, str) or typ.lower() not in {TOKEN_TYPE, f"application/{TOKEN_TYPE}"}:
        raise InvalidToken("typ must be at+jwt")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("kid missing")
    if not header.keys() <= _ALLOWED_HEADER:
        raise InvalidToken("unexpected header parameters")
    return kid


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    # bool is an int subclass; `"exp": true` is not a time.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"{name} must be a number")
    return float(value)
