"""Idempotency-Key rules, one test each, on SQLite, PostgreSQL and MariaDB.

The rules are the IETF draft's and Stripe's, as docs/reliability.md states them; the
service under test is ``service.py`` (the runtime's IdempotentRoute, as generated routes
use it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from support.runtime_service import create_database_engine

from microforge.runtime.auth.principal import Principal
from microforge.runtime.idempotency.handler import scope_of
from microforge.runtime.idempotency.key import fingerprint
from microforge.runtime.idempotency.policy import IdempotencyPolicy
from microforge.runtime.idempotency.store import TABLE

from .service import count_payments, create_app, metadata, payments

Clients = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
PROBLEM = "application/problem+json"


@pytest.fixture
async def payments_engine(engine_url: str) -> AsyncIterator[AsyncEngine]:
    engine = await create_database_engine(engine_url, metadata)
    yield engine
    await engine.dispose()


@pytest.fixture
def service(payments_engine: AsyncEngine) -> Clients:
    """A client factory: ``service(policy)`` serves the payments app with that policy."""

    @asynccontextmanager
    async def serve(
        policy: IdempotencyPolicy = IdempotencyPolicy(), **kwargs: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(payments_engine, policy, **kwargs)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client

    return serve


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": f'"{value}"'}


def assert_problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    for word in words:
        assert word in body["detail"], body["detail"]
    return body


def assert_replay_of(replay: httpx.Response, first: httpx.Response) -> None:
    assert replay.headers.get("idempotent-replayed") == "true"
    assert first.headers.get("idempotent-replayed") is None
    assert replay.status_code == first.status_code
    assert replay.content == first.content
    for name in ("location", "content-type", "idempotency-key-expires"):
        assert replay.headers.get(name) == first.headers.get(name), name


# --- without a key ----------------------------------------------------------------------


async def test_optional_without_a_key_runs_every_time(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    async with service() as client:
        for _ in range(2):
            response = await client.post("/payments", json={"amount": 5})
            assert response.status_code == 201
            assert "idempotent-replayed" not in response.headers
            assert "idempotency-key-expires" not in response.headers
    assert await count_payments(payments_engine) == 2


async def test_required_without_a_key_is_a_400_that_changes_nothing(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    async with service(IdempotencyPolicy(mode="required")) as client:
        response = await client.post("/payments", json={"amount": 5})
    body = assert_problem(response, 400, "requires an Idempotency-Key", '"<a new UUID>"')
    assert body["type"] == "urn:microforge:problem:idempotency-key-missing"
    assert await count_payments(payments_engine) == 0


async def test_off_ignores_the_header(service: Clients, payments_engine: AsyncEngine) -> None:
    async with service(IdempotencyPolicy(mode="off")) as client:
        first = await client.post("/payments", json={"amount": 5}, headers=key("k"))
        second = await client.post("/payments", json={"amount": 5}, headers=key("k"))
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert await count_payments(payments_engine) == 2


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("abc-123", "quoted string"),
        ('""', "must not be empty"),
        ('"' + "k" * 256 + '"', "at most 255"),
        ('"bad\\n"', "backslash"),
        ('"open', "closing quote"),
        ('"k" trailing', "parameters"),
        ('"caf\u00e9"', "printable ASCII"),
    ],
)
async def test_a_malformed_key_is_a_400_that_changes_nothing(
    service: Clients, payments_engine: AsyncEngine, header: str, words: str
) -> None:
    async with service() as client:
        response = await client.post(
            "/payments",
            json={"amount": 5},
            headers={"Idempotency-Key": header.encode("utf-8")},
        )
    body = assert_problem(response, 400, words)
    assert body["type"] == "urn:microforge:problem:idempotency-key-malformed"
    assert await count_payments(payments_engine) == 0


# --- replays ----------------------------------------------------------------------------


async def test_a_retry_gets_the_stored_response_and_changes_nothing(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    async with service() as client:
        first = await client.post("/payments", json={"amount": 5}, headers=key("pay-1"))
        assert first.status_code == 201
        replays = [
            await client.post("/payments", json={"amount": 5}, headers=key("pay-1"))
            for _ in range(3)
        ]
    for replay in replays:
        assert_replay_of(replay, first)
    assert await count_payments(payments_engine) == 1


async def test_the_response_states_when_the_key_expires(service: Clients) -> None:
    retention = 3600.0
    async with service(IdempotencyPolicy(retention=retention)) as client:
        before = dt.datetime.now(dt.UTC)
        response = await client.post("/payments", json={"amount": 5}, headers=key("k"))
        after = dt.datetime.now(dt.UTC)
    expires = email.utils.parsedate_to_datetime(response.headers["idempotency-key-expires"])
    low = before + dt.timedelta(seconds=retention) - dt.timedelta(seconds=1)
    assert low <= expires <= after + dt.timedelta(seconds=retention)


async def test_a_json_body_is_compared_by_meaning(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    async with service() as client:
        first = await client.post(
            "/payments",
            content=b'{"amount": 5, "reference": "r-1"}',
            headers={**key("k"), "content-type": "application/json"},
        )
        again = await client.post(
            "/payments",
            content=b'{"reference":"r-1",\n "amount":5}',
            headers={**key("k"), "content-type": "application/json"},
        )
    assert_replay_of(again, first)
    assert await count_payments(payments_engine) == 1


@pytest.mark.parametrize(
    "other",
    [
        {"method": "POST", "url": "/payments", "json": {"amount": 6}},
        {"method": "POST", "url": "/payments?debug=1", "json": {"amount": 5}},
    ],
    ids=["another-body", "another-query"],
)
async def test_the_same_key_for_another_request_is_a_422(
    service: Clients, payments_engine: AsyncEngine, other: dict[str, Any]
) -> None:
    async with service() as client:
        first = await client.post("/payments", json={"amount": 5}, headers=key("k"))
        assert first.status_code == 201
        response = await client.request(headers=key("k"), **other)
    body = assert_problem(response, 422, "different request", "new key")
    assert body["type"] == "urn:microforge:problem:idempotency-key-reused"
    assert await count_payments(payments_engine) == 1


async def test_the_same_key_on_another_route_is_a_422(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    async with service() as client:
        created = await client.post("/payments", json={"amount": 5}, headers=key("k"))
        path = created.headers["location"]
        response = await client.patch(path, json={"amount": 5}, headers=key("k"))
    assert_problem(response, 422, "different request")
    assert await count_payments(payments_engine, amount=5) == 1


async def test_patch_replays_its_response(service: Clients, payments_engine: AsyncEngine) -> None:
    async with service() as client:
        created = (await client.post("/payments", json={"amount": 5})).json()
        path = f"/payments/{created['id']}"
        first = await client.patch(path, json={"amount": 8}, headers=key("change-1"))
        assert first.status_code == 200
        assert first.json()["version"] == 2
        again = await client.patch(path, json={"amount": 8}, headers=key("change-1"))
    assert_replay_of(again, first)
    # One update ran: the version moved once.
    assert (await _payment(payments_engine, created["id"]))["version"] == 2


# --- scoping ----------------------------------------------------------------------------


async def test_keys_are_scoped_to_the_caller(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    async with service() as client:
        alice = await client.post(
            "/payments", json={"amount": 5}, headers={**key("k"), "X-Caller": "alice"}
        )
        # Same key, other callers: neither a replay of Alice's payment nor a 422.
        bob = await client.post(
            "/payments", json={"amount": 5}, headers={**key("k"), "X-Caller": "bob"}
        )
        bob_other = await client.post(
            "/payments", json={"amount": 9}, headers={**key("k2"), "X-Caller": "bob"}
        )
        alice_tenant_b = await client.post(
            "/payments",
            json={"amount": 5},
            headers={**key("k"), "X-Caller": "alice", "X-Tenant": "b"},
        )
    for response in (alice, bob, bob_other, alice_tenant_b):
        assert response.status_code == 201
        assert "idempotent-replayed" not in response.headers
    assert len({r.json()["id"] for r in (alice, bob, alice_tenant_b)}) == 3
    assert await count_payments(payments_engine) == 4


def test_scopes_separate_principals_kinds_and_tenants() -> None:
    scopes = {
        scope_of(Principal("1", "user")),
        scope_of(Principal("1", "client")),
        scope_of(Principal("1", "user", tenant="a")),
        scope_of(Principal("1", "user", tenant="b")),
        scope_of(Principal("", "anonymous")),
    }
    assert len(scopes) == 5
    long = scope_of(Principal("x" * 1000, "user"))
    assert len(long) <= 255
    assert long.startswith("sha256:")


# --- outcomes ---------------------------------------------------------------------------


async def test_a_client_error_is_stored_and_rolls_the_change_back(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    async with service() as client:
        first = await client.post("/payments", json={"amount": 400}, headers=key("k"))
        again = await client.post("/payments", json={"amount": 400}, headers=key("k"))
    assert_problem(first, 400, "400 is refused")
    assert_replay_of(again, first)
    # The insert before the error did not survive it.
    assert await count_payments(payments_engine) == 0


async def test_a_conflict_raised_by_the_database_is_stored(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    async with service() as client:
        taken = await client.post("/payments", json={"amount": 5, "reference": "r"})
        assert taken.status_code == 201
        body = {"amount": 6, "reference": "r"}
        first = await client.post("/payments", json=body, headers=key("k"))
        again = await client.post("/payments", json=body, headers=key("k"))
    assert_problem(first, 409)
    assert_replay_of(again, first)
    assert await count_payments(payments_engine) == 1


@pytest.mark.parametrize("amount", [500, 503])
async def test_a_server_error_frees_the_key_so_a_retry_runs_again(
    service: Clients, payments_engine: AsyncEngine, amount: int
) -> None:
    async with service() as client:
        first = await client.post("/payments", json={"amount": amount}, headers=key("k"))
        again = await client.post("/payments", json={"amount": amount}, headers=key("k"))
    for response in (first, again):
        assert response.status_code == amount
        assert "idempotent-replayed" not in response.headers
    assert await count_payments(payments_engine) == 0
    assert await _keys(payments_engine) == 0


async def test_server_errors_are_stored_when_the_policy_says_so(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    policy = IdempotencyPolicy(outcomes=frozenset({"success", "client_error", "server_error"}))
    async with service(policy) as client:
        first = await client.post("/payments", json={"amount": 503}, headers=key("k"))
        again = await client.post("/payments", json={"amount": 503}, headers=key("k"))
    assert first.status_code == 503
    assert_replay_of(again, first)


async def test_client_errors_are_not_stored_when_the_policy_says_so(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    policy = IdempotencyPolicy(outcomes=frozenset({"success"}))
    async with service(policy) as client:
        first = await client.post("/payments", json={"amount": 400}, headers=key("k"))
        # The key is free again: the same key may now carry a corrected request.
        fixed = await client.post("/payments", json={"amount": 40}, headers=key("k"))
    assert first.status_code == 400
    assert fixed.status_code == 201
    assert await count_payments(payments_engine) == 1


# --- concurrency and leases ------------------------------------------------------------


async def test_a_retry_while_the_first_runs_is_a_409_with_retry_after(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    async with service(IdempotencyPolicy(wait=0)) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        first = asyncio.create_task(
            client.post("/payments", json={"amount": 777}, headers=key("k"))
        )
        await _until(lambda: _keys(payments_engine), 1)
        busy = await client.post("/payments", json={"amount": 777}, headers=key("k"))
        body = assert_problem(busy, 409, "still being processed", "Retry-After")
        assert body["type"] == "urn:microforge:problem:idempotency-key-in-progress"
        assert busy.headers["retry-after"] == "1"
        app.state.gate.set()
        done = await first
        assert done.status_code == 201
        again = await client.post("/payments", json={"amount": 777}, headers=key("k"))
    assert_replay_of(again, done)
    assert await count_payments(payments_engine) == 1


async def test_a_duplicate_waits_for_the_first_and_gets_its_response(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    async with service(IdempotencyPolicy(wait=30)) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        first = asyncio.create_task(
            client.post("/payments", json={"amount": 777}, headers=key("k"))
        )
        await _until(lambda: _keys(payments_engine), 1)
        duplicate = asyncio.create_task(
            client.post("/payments", json={"amount": 777}, headers=key("k"))
        )
        await asyncio.sleep(0.05)  # the duplicate is now waiting, not answered
        assert not duplicate.done()
        app.state.gate.set()
        done, waited = await first, await duplicate
    assert done.status_code == 201
    assert_replay_of(waited, done)
    assert await count_payments(payments_engine) == 1


async def test_fifty_concurrent_identical_posts_make_one_row_and_fifty_identical_responses(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    async with service(IdempotencyPolicy(wait=60)) as client:
        responses = await asyncio.gather(
            *(client.post("/payments", json={"amount": 5}, headers=key("race")) for _ in range(50))
        )
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert len({r.headers["location"] for r in responses}) == 1
    replayed = [r for r in responses if r.headers.get("idempotent-replayed") == "true"]
    assert len(replayed) == 49
    assert await count_payments(payments_engine) == 1


async def test_an_abandoned_key_is_free_once_its_lease_ends(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    """A request that died holding its key (never completed, never released)."""
    policy = IdempotencyPolicy(lease=0.5, wait=0)
    async with service(policy) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        store = app.state.idempotency.database
        request = client.build_request(
            "POST", "http://test/payments", json={"amount": 5}, headers=key("k")
        )
        print_ = _fingerprint_of(request)
        held = await store.claim(
            scope_of(Principal("alice", "user")), "k", print_, lease=0.5, retention=60
        )
        assert held.state == "acquired"
        busy = await client.send(request)
        assert_problem(busy, 409, "still being processed")
        retried = await _until_status(client, request, 201)
    assert "idempotent-replayed" not in retried.headers
    assert await count_payments(payments_engine) == 1


async def test_a_request_that_outlives_its_lease_is_rolled_back_when_a_retry_took_over(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    """Fencing: the slow first request cannot complete a key a retry took over."""
    async with service(IdempotencyPolicy(lease=0.5, wait=0)) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        slow = asyncio.create_task(client.post("/payments", json={"amount": 777}, headers=key("k")))
        await _until(lambda: _keys(payments_engine), 1)
        request = client.build_request(
            "POST", "http://test/payments", json={"amount": 777}, headers=key("k")
        )
        # The retry takes the key over after the lease; it then waits on the gate too.
        retry = asyncio.create_task(_until_status(client, request, 201, statuses={409}))
        await _until(lambda: _running_tokens(payments_engine), 2, distinct=True)
        app.state.gate.set()
        lost, won = await slow, await retry
    body = assert_problem(lost, 409, "took it over", "nothing was changed")
    assert body["type"] == "urn:microforge:problem:idempotency-key-in-progress"
    assert won.status_code == 201
    assert await count_payments(payments_engine) == 1


async def test_an_expired_key_runs_as_a_new_request(
    service: Clients, payments_engine: AsyncEngine
) -> None:
    async with service(IdempotencyPolicy(retention=0.3)) as client:
        first = await client.post("/payments", json={"amount": 5}, headers=key("k"))
        request = client.build_request(
            "POST", "http://test/payments", json={"amount": 6}, headers=key("k")
        )
        # Until the key expires the other body is refused; then it runs.
        second = await _until_status(client, request, 201, statuses={422})
    assert first.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    assert await count_payments(payments_engine) == 2


async def test_purge_drops_expired_keys(service: Clients, payments_engine: AsyncEngine) -> None:
    async with service(IdempotencyPolicy(retention=0.2)) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        await client.post("/payments", json={"amount": 5}, headers=key("a"))
        await client.post("/payments", json={"amount": 5}, headers=key("b"))
        store = app.state.idempotency.database
        deadline = asyncio.get_running_loop().time() + 10
        removed = 0
        while removed < 2:
            removed += await store.purge()
            assert asyncio.get_running_loop().time() < deadline, "keys never expired"
            await asyncio.sleep(0.05)
    assert await _keys(payments_engine) == 0


# --- helpers ----------------------------------------------------------------------------


async def _keys(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(TABLE))).scalar_one())


async def _running_tokens(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(TABLE.c.token).where(TABLE.c.state == "running"))
        return {row[0] for row in rows}


async def _until(probe: Callable[[], Any], expected: int, *, distinct: bool = False) -> None:
    """Poll ``probe`` until it reaches ``expected`` (a count, or distinct tokens seen)."""
    seen: set[Any] = set()
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        value = await probe()
        if distinct:
            seen |= value
            if len(seen) >= expected:
                return
        elif value >= expected:
            return
        assert asyncio.get_running_loop().time() < deadline, f"never reached {expected}"
        await asyncio.sleep(0.01)


async def _until_status(
    client: httpx.AsyncClient,
    request: httpx.Request,
    status: int,
    statuses: set[int] = frozenset({409}),  # type: ignore[assignment]
) -> httpx.Response:
    """Send ``request`` until it answers ``status``; meanwhile only ``statuses`` may come."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        response = await client.send(request)
        if response.status_code == status:
            return response
        assert response.status_code in statuses, response.text
        assert asyncio.get_running_loop().time() < deadline, "never answered"
        await asyncio.sleep(0.05)


def _fingerprint_of(request: httpx.Request) -> str:
    return fingerprint("POST", request.url.path, request.content, "application/json")


async def _payment(engine: AsyncEngine, id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(payments).where(payments.c.id == uuid.UUID(id)))).one()
    return dict(row._mapping)


async def test_the_service_purges_expired_keys_in_the_background(
    payments_engine: AsyncEngine,
) -> None:
    app = create_app(payments_engine, IdempotencyPolicy(retention=0.2), purge_every=0.05)
    idempotency = app.state.idempotency
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.post("/payments", json={"amount": 5}, headers=key("a"))
    assert await _keys(payments_engine) == 1
    await idempotency.start()
    try:
        await _until_zero(lambda: _keys(payments_engine))
    finally:
        await idempotency.aclose()
    assert idempotency._purger is None


async def _until_zero(probe: Callable[[], Any]) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while await probe() != 0:
        assert asyncio.get_running_loop().time() < deadline, "never purged"
        await asyncio.sleep(0.02)
