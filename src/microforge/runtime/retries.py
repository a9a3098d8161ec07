"""Safe retries for calls between services: backoff with jitter, within a retry budget.

`RetryingTransport` wraps an httpx transport. It retries what is safe to retry:

- a request that never reached the server (connection refused or reset before a reply);
- an answer that says "try again": 429, 502, 503, 504, and 409 with Retry-After (an
  idempotent request still running elsewhere);
- on a read timeout, only requests that are idempotent.

Which requests are idempotent: GET, HEAD, OPTIONS, PUT and DELETE, and any request with an
`Idempotency-Key` header. Every POST gets an `Idempotency-Key` before its first attempt,
unless it already has one, so its retries are safe too: a server that honours the key
runs it once. A PATCH without a key is not retried after it may have reached the server.

Waits grow exponentially with full jitter (a random wait between 0 and the cap of each
attempt), so many clients that failed together do not retry together; a Retry-After
from the server is honoured up to `max_wait`. The `RetryBudget` keeps retries to a share
of the traffic (10% by default, plus a small floor): when a peer is down, a caller does
not multiply the load on it by its retry count.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from .idempotency.key import new_idempotency_key

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENCY_KEY = "Idempotency-Key"


@dataclass
class RetryPolicy:
    attempts: int = 3  # in all, the first one included
    base_wait: float = 0.05  # seconds; attempt n waits up to base_wait * 2**(n-1)
    max_wait: float = 2.0  # cap of any one wait, Retry-After included


class RetryBudget:
    """A token bucket shared by every request of a client.

    Each request deposits `ratio` of a token and each retry takes one, so retries stay
    near `ratio` of the requests; `min_per_second` tokens a second keep a quiet client
    able to retry at all. Tokens are capped at `max_tokens`.
    """

    def __init__(
        self,
        ratio: float = 0.1,
        min_per_second: float = 10.0,
        max_tokens: float = 100.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.max_tokens = max_tokens
        self._clock = clock
        self._tokens = max_tokens
        self._at = clock()
        self.refused = 0  # retries the budget did not allow

    def deposit(self) -> None:
        self._refill()
        self._tokens = min(self.max_tokens, self._tokens + self.ratio)

    def withdraw(self) -> bool:
        self._refill()
        if self._tokens < 1:
            self.refused += 1
            return False
        self._tokens -= 1
        return True

    def _refill(self) -> None:
        now = self._clock()
        elapsed, self._at = now - self._at, now
        self._tokens = min(self.max_tokens, self._tokens + elapsed * self.min_per_second)


class RetryingTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        policy: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.policy = policy or RetryPolicy()
        self.budget = budget or RetryBudget()
        self._sleep = sleep
        self._random = rng or random.Random()
        self.retries = 0  # retries made, over the transport's life

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and IDEMPOTENCY_KEY not in request.headers:
            # Quoted, as the header's grammar wants: services answer a bare UUID with 400.
            request.headers[IDEMPOTENCY_KEY] = new_idempotency_key()
        await request.aread()  # a body read once can be sent again
        idempotent = request.method in IDEMPOTENT_METHODS or IDEMPOTENCY_KEY in request.headers
        self.budget.deposit()
        attempt = 1
        while True:
            try:
                response = await self.inner.handle_async_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
                if not await self._may_retry(attempt, None):  # never reached the server
                    raise
            except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError):
                if not idempotent or not await self._may_retry(attempt, None):
                    raise
            else:
                wait_hint = _retry_after(response)
                again = response.status_code in RETRY_STATUSES or (
                    response.status_code == 409 and wait_hint is not None
                )
                if not again or not idempotent or not await self._may_retry(attempt, wait_hint):
                    return response
                await response.aclose()
            attempt += 1

    async def _may_retry(self, attempt: int, wait_hint: float | None) -> bool:
        """Wait before attempt `attempt + 1`, if the policy and the budget allow one."""
        if attempt >= self.policy.attempts or not self.budget.withdraw():
            return False
        cap = min(self.policy.max_wait, self.policy.base_wait * 2 ** (attempt - 1))
        wait = self._random.uniform(0, cap)
        if wait_hint is not None:
            wait = min(self.policy.max_wait, max(wait, wait_hint))
        self.retries += 1
        await self._sleep(wait)
        return True

    async def aclose(self) -> None:
        await self.inner.aclose()


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (the delay form; an HTTP date is treated as absent)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
