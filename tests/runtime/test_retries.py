"""Retries between services: what is retried, how long it waits, and the budget."""

from __future__ import annotations

import random
from collections import Counter

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.databases import free_port

from microforge.runtime.idempotency.key import parse_idempotency_key
from microforge.runtime.retries import RetryBudget, RetryingTransport, RetryPolicy


class Flaky:
    """A server that fails each path's first `failures` requests with `status`."""

    def __init__(self, failures: int, status: int = 503, retry_after: str | None = None) -> None:
        self.failures = failures
        self.status = status
        self.retry_after = retry_after
        self.seen: Counter[str] = Counter()
        self.keys: list[str | None] = []
        self.bodies: list[bytes] = []

    async def handle(self, request: Request) -> Response:
        self.seen[request.url.path] += 1
        self.keys.append(request.headers.get("idempotency-key"))
        self.bodies.append(await request.body())
        if self.seen[request.url.path] <= self.failures:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return JSONResponse({"failed": True}, status_code=self.status, headers=headers)
        return JSONResponse({"ok": True, "attempt": self.seen[request.url.path]})

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=methods)])


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(
    server: Flaky,
    policy: RetryPolicy | None = None,
    budget: RetryBudget | None = None,
    sleeps: Sleeps | None = None,
) -> tuple[httpx.AsyncClient, RetryingTransport]:
    transport = RetryingTransport(
        httpx.ASGITransport(app=server.app()),
        policy,
        budget,
        sleep=sleeps or Sleeps(),
        rng=random.Random(7),
    )
    return httpx.AsyncClient(transport=transport, base_url="http://peer"), transport


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_a_failing_get_is_retried_until_it_succeeds(status: int) -> None:
    server = Flaky(failures=2, status=status)
    http, transport = client(server)
    response = await http.get("/stock")
    assert response.status_code == 200
    assert response.json()["attempt"] == 3
    assert transport.retries == 2


async def test_attempts_are_limited() -> None:
    server = Flaky(failures=10)
    http, _ = client(server, RetryPolicy(attempts=3))
    response = await http.get("/stock")
    assert response.status_code == 503  # the last answer, as the server gave it
    assert server.seen["/stock"] == 3


async def test_every_post_carries_one_idempotency_key_across_its_retries() -> None:
    server = Flaky(failures=2)
    http, _ = client(server)
    response = await http.post("/orders", json={"total": "9.50"})
    assert response.status_code == 200
    assert len(set(server.keys)) == 1
    assert server.keys[0] is not None
    parse_idempotency_key(server.keys[0])  # a key the services accept (a quoted string)
    assert server.bodies == [b'{"total":"9.50"}'] * 3  # the body is sent again, whole
    await http.post("/orders", json={"total": "9.50"})
    assert server.keys[3] != server.keys[0]  # a new request, a new key


async def test_a_key_given_by_the_caller_is_kept() -> None:
    server = Flaky(failures=1)
    http, _ = client(server)
    await http.post("/orders", json={}, headers={"Idempotency-Key": "order-42"})
    assert server.keys == ["order-42", "order-42"]


async def test_a_patch_without_a_key_is_not_retried() -> None:
    server = Flaky(failures=1)
    http, _ = client(server)
    response = await http.patch("/orders/1", json={"status": "paid"})
    assert response.status_code == 503
    assert server.seen["/orders/1"] == 1
    keyed = await http.patch("/orders/2", json={}, headers={"Idempotency-Key": "k"})
    assert keyed.status_code == 200


async def test_a_client_error_is_not_retried() -> None:
    server = Flaky(failures=1, status=400)
    http, _ = client(server)
    assert (await http.get("/stock")).status_code == 400
    assert server.seen["/stock"] == 1


async def test_a_409_is_retried_only_when_it_says_when() -> None:
    conflict = Flaky(failures=1, status=409)
    http, _ = client(conflict)
    assert (await http.post("/orders", json={})).status_code == 409
    running = Flaky(failures=1, status=409, retry_after="1")  # the same key, still running
    sleeps = Sleeps()
    http, _ = client(running, sleeps=sleeps)
    assert (await http.post("/orders", json={})).status_code == 200
    assert sleeps.waits == [1.0]


async def test_waits_grow_with_full_jitter_and_honour_retry_after_up_to_the_cap() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=5, base_wait=0.1, max_wait=0.5)
    http, _ = client(Flaky(failures=4), policy, sleeps=sleeps)
    await http.get("/stock")
    caps = [0.1, 0.2, 0.4, 0.5]
    assert len(sleeps.waits) == 4
    assert all(0 <= wait <= cap for wait, cap in zip(sleeps.waits, caps, strict=True))
    assert len(set(sleeps.waits)) == 4  # jittered, not a fixed schedule
    sleeps = Sleeps()
    http, _ = client(Flaky(failures=1, status=503, retry_after="30"), policy, sleeps=sleeps)
    await http.get("/stock")
    assert sleeps.waits == [0.5]  # the server asked for 30 s; the cap is 0.5


async def test_the_budget_stops_retry_storms() -> None:
    now = [0.0]
    budget = RetryBudget(ratio=0.1, min_per_second=0, max_tokens=2, clock=lambda: now[0])
    server = Flaky(failures=1_000)
    http, transport = client(server, RetryPolicy(attempts=3), budget)
    for _ in range(10):
        await http.get("/down")
    # The bucket starts full (2 tokens): the first request retries twice. The next nine
    # deposit 0.9 of a token between them, short of one retry: 2 retries in all, not 20.
    assert transport.retries == 2
    assert server.seen["/down"] == 12
    assert budget.refused == 9
    now[0] += 100  # time alone refills nothing without a floor; ten more requests do
    for _ in range(10):
        await http.get("/down")
    assert transport.retries == 3


async def test_a_refused_connection_is_retried_then_raised() -> None:
    sleeps = Sleeps()
    transport = RetryingTransport(policy=RetryPolicy(attempts=3), sleep=sleeps)
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"http://127.0.0.1:{free_port()}/orders", json={})
    assert transport.retries == 2
    assert len(sleeps.waits) == 2
