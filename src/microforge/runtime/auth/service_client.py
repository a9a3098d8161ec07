"""Service-to-service calls: an API key traded for access tokens, sent as a bearer token.

`ServiceTokenSource` runs the OAuth 2 client-credentials grant against the identity
service and caches the token until shortly before it expires; concurrent callers share
one refresh. `service_client()` is an httpx client that attaches the token and, on a
401, retries once with a fresh one (the token may have been signed by a key the other
service has not fetched yet, or revoked).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import httpx

from ..retries import RetryingTransport


class ServiceTokenError(Exception):
    """The identity service did not hand out a token."""


class ServiceTokenSource:
    """Access tokens for one API key, fetched from `token_url` (`.../auth/token`)."""

    def __init__(
        self,
        token_url: str,
        api_key: str,
        *,
        client: httpx.AsyncClient | None = None,
        refresh_margin: float = 30.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self._api_key = api_key
        self._given_client = client
        self._own_client: httpx.AsyncClient | None = None
        self._timeout = timeout
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._token: str | None = None
        self._valid_until = float("-inf")
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # the API key must not end up in logs
        return f"ServiceTokenSource({self.token_url!r})"

    async def token(self, *, replacing: str | None = None) -> str:
        """A valid access token; pass `replacing` to get a newer one than that token.

        Many requests may see a 401 for the same token at once; only the first one to
        get the lock fetches, the others find a different token already cached.
        """
        current = self._token
        if current is not None and current != replacing and self._clock() < self._valid_until:
            return current
        async with self._lock:
            current = self._token
            if current is not None and current != replacing and self._clock() < self._valid_until:
                return current
            token, expires_in = await self._fetch()
            # Refresh a little early, but never make a short-lived token unusable.
            margin = min(self._refresh_margin, expires_in / 2)
            self._token = token
            self._valid_until = self._clock() + expires_in - margin
            return token

    async def _fetch(self) -> tuple[str, float]:
        client = self._client()
        try:
            response = await client.post(
                self.token_url,
                data={"grant_type": "client_credentials", "client_secret": self._api_key},
                headers={"accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise ServiceTokenError(f"cannot reach {self.token_url}: {exc}") from exc
        if response.status_code != 200:
            raise ServiceTokenError(
                f"{self.token_url} refused the API key (HTTP {response.status_code})"
            )
        try:
            body: Any = response.json()
        except ValueError as exc:
            raise ServiceTokenError(f"{self.token_url} did not answer with JSON") from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        if (
            not isinstance(token, str)
            or not token
            or isinstance(expires_in, bool)
            or not isinstance(expires_in, int | float)
            or expires_in <= 0
        ):
            raise ServiceTokenError(f"{self.token_url} answered without a usable access token")
        return token, float(expires_in)

    def _client(self) -> httpx.AsyncClient:
        if self._given_client is not None:
            return self._given_client
        if self._own_client is None:
            self._own_client = httpx.AsyncClient(timeout=self._timeout, trust_env=False)
        return self._own_client

    async def aclose(self) -> None:
        """Close the HTTP client we made (a client passed in belongs to the caller)."""
        if self._own_client is not None:
            client, self._own_client = self._own_client, None
            await client.aclose()


class ServiceTokenAuth(httpx.Auth):
    """httpx authentication with tokens from a ServiceTokenSource (async clients only)."""

    # The body must be replayable for the retry after a 401.
    requires_request_body = True

    def __init__(self, tokens: ServiceTokenSource) -> None:
        self.tokens = tokens

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("ServiceTokenAuth needs an httpx.AsyncClient")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.tokens.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            await response.aread()  # release the connection before the retry
            fresh = await self.tokens.token(replacing=token)
            request.headers["Authorization"] = f"Bearer {fresh}"
            yield request


def service_client(base_url: str, tokens: ServiceTokenSource, **options: Any) -> httpx.AsyncClient:
    """An httpx.AsyncClient for `base_url` that authenticates with `tokens` and retries
    what is safe to retry (runtime.retries: backoff with jitter, a retry budget, an
    Idempotency-Key on every POST).

    `options` go to httpx.AsyncClient (timeout, ...); a `transport` given there is
    wrapped by the retries.
    """
    transport = RetryingTransport(options.pop("transport", None))
    return httpx.AsyncClient(
        base_url=base_url, auth=ServiceTokenAuth(tokens), transport=transport, **options
    )
