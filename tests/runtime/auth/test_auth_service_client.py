"""Service-to-service calls: client-credentials tokens and the retrying bearer client.

Two in-process apps: a minimal identity service implementing `POST /auth/token` with the
real TokenIssuer, and a resource service that authenticates callers with `Caller`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.auth_tokens import AUDIENCE, ISSUER, FakeClock

from microforge.runner.ports import free_port
from microforge.runtime.auth.authenticate import Caller
from microforge.runtime.auth.keys import KeyStore
from microforge.runtime.auth.service_client import (
    ServiceTokenError,
    ServiceTokenSource,
    service_client,
)
from microforge.runtime.auth.tokens import StaticJwks, TokenIssuer, TokenVerifier
from microforge.runtime.problems import install_problem_handlers

API_KEY = "mf_abcd1234_s3cr3t-value-never-logged"
TOKEN_URL = "http://identity.test/auth/token"
ACCESS_TTL = 120


@dataclass
class Identity:
    """Just enough of the identity service: the client-credentials grant."""

    store: KeyStore
    issued: int = 0
    forms: list[dict[str, list[str]]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/auth/token", self.token, methods=["POST"])])

    async def token(self, request: Request) -> Response:
        form = parse_qs((await request.body()).decode())
        self.forms.append(form)
        if form.get("grant_type") != ["client_credentials"] or form.get("client_secret") != [
            API_KEY
        ]:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        self.issued += 1
        issuer = TokenIssuer(self.store, ISSUER, AUDIENCE, access_ttl=ACCESS_TTL)
        token, _ = issuer.issue("apikey:1", "client", ["sync"])
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": ACCESS_TTL}
        )


@dataclass
class Resource:
    """A service that trusts whatever keys `trust()` was last given."""

    app: FastAPI
    calls: int = 0
    refused: int = 0

    def trust(self, jwks: dict[str, Any]) -> None:
        self.app.state.token_verifier = TokenVerifier(StaticJwks(jwks), ISSUER, AUDIENCE)


def resource_service() -> Resource:
    app = FastAPI()
    install_problem_handlers(app)
    resource = Resource(app)

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Response:
        resource.calls += 1
        response: Response = await call_next(request)
        resource.refused += response.status_code == 401
        return response

    @app.get("/orders")
    async def orders(caller: Caller) -> dict[str, Any]:
        return {"subject": caller.subject, "roles": sorted(caller.roles)}

    @app.post("/echo")
    async def echo(caller: Caller, request: Request) -> dict[str, Any]:
        return {"subject": caller.subject, "body": (await request.body()).decode()}

    return resource


@dataclass
class Setup:
    identity: Identity
    resource: Resource
    clock: FakeClock
    tokens: ServiceTokenSource
    client: httpx.AsyncClient


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    identity = Identity(KeyStore.ensure(tmp_path))
    resource = resource_service()
    resource.trust(identity.store.jwks())
    clock = FakeClock(1000.0)
    identity_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=identity.app()))
    tokens = ServiceTokenSource(TOKEN_URL, API_KEY, client=identity_http, clock=clock)
    client = service_client(
        "http://orders.test", tokens, transport=httpx.ASGITransport(app=resource.app)
    )
    try:
        yield Setup(identity, resource, clock, tokens, client)
    finally:
        await client.aclose()
        await identity_http.aclose()


async def test_calls_carry_a_client_token(setup: Setup) -> None:
    response = await setup.client.get("/orders")
    assert response.status_code == 200
    assert response.json() == {"subject": "apikey:1", "roles": ["sync"]}
    assert setup.identity.forms == [
        {"grant_type": ["client_credentials"], "client_secret": [API_KEY]}
    ]


async def test_the_token_is_reused_until_shortly_before_it_expires(setup: Setup) -> None:
    for _ in range(3):
        assert (await setup.client.get("/orders")).status_code == 200
    assert setup.identity.issued == 1
    # expires_in 120 s, refreshed 30 s early.
    setup.clock.now += ACCESS_TTL - 31
    assert (await setup.client.get("/orders")).status_code == 200
    assert setup.identity.issued == 1
    setup.clock.now += 1
    assert (await setup.client.get("/orders")).status_code == 200
    assert setup.identity.issued == 2


async def test_a_short_lived_token_is_still_used() -> None:
    clock = FakeClock()

    async def tiny(request: Request) -> Response:
        return JSONResponse({"access_token": "t", "token_type": "Bearer", "expires_in": 10})

    app = Starlette(routes=[Route("/auth/token", tiny, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        tokens = ServiceTokenSource(TOKEN_URL, API_KEY, client=http, clock=clock)
        assert await tokens.token() == "t"
        clock.now += 4  # the margin shrinks to half the lifetime, not below zero
        assert await tokens.token() == "t"


async def test_concurrent_callers_share_one_token_request(setup: Setup) -> None:
    responses = await asyncio.gather(*(setup.client.get("/orders") for _ in range(20)))
    assert {r.status_code for r in responses} == {200}
    assert setup.identity.issued == 1


async def test_a_401_is_retried_once_with_a_fresh_token(setup: Setup) -> None:
    assert (await setup.client.get("/orders")).status_code == 200
    # The identity service rotates and drops the key that signed our cached token;
    # the resource service only knows the new key now.
    setup.identity.store.rotate()
    setup.identity.store.prune(keep=1)
    setup.resource.trust(setup.identity.store.jwks())

    response = await setup.client.post("/echo", json={"order": 7})

    assert response.status_code == 200
    assert response.json() == {"subject": "apikey:1", "body": '{"order":7}'}
    assert setup.identity.issued == 2
    assert setup.resource.refused == 1


async def test_concurrent_401s_share_one_refresh(setup: Setup) -> None:
    assert (await setup.client.get("/orders")).status_code == 200
    setup.identity.store.rotate()
    setup.identity.store.prune(keep=1)
    setup.resource.trust(setup.identity.store.jwks())

    responses = await asyncio.gather(*(setup.client.get("/orders") for _ in range(10)))

    assert {r.status_code for r in responses} == {200}
    assert setup.identity.issued == 2


async def test_a_second_401_is_returned_not_looped(setup: Setup, tmp_path: Path) -> None:
    setup.resource.trust(KeyStore.ensure(tmp_path / "unrelated").jwks())
    response = await setup.client.get("/orders")
    assert response.status_code == 401
    assert setup.resource.calls == 2
    assert setup.identity.issued == 2


async def test_a_refused_api_key_is_an_error_that_does_not_leak_it(setup: Setup) -> None:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=setup.identity.app()))
    async with http:
        wrong_key = "mf_wrong_secret-material"
        tokens = ServiceTokenSource(TOKEN_URL, wrong_key, client=http)
        with pytest.raises(ServiceTokenError, match="HTTP 401") as info:
            await tokens.token()
    assert wrong_key not in str(info.value)
    assert wrong_key not in repr(tokens)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"token_type": "Bearer", "expires_in": 60}, id="no-token"),
        pytest.param({"access_token": "t", "expires_in": "60"}, id="expires-in-a-string"),
        pytest.param({"access_token": "t", "expires_in": 0}, id="expires-in-zero"),
        pytest.param({"access_token": "", "expires_in": 60}, id="empty-token"),
        pytest.param(["t"], id="not-an-object"),
    ],
)
async def test_an_unusable_token_answer_is_an_error(answer: Any) -> None:
    async def token(request: Request) -> Response:
        return JSONResponse(answer)

    app = Starlette(routes=[Route("/auth/token", token, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        with pytest.raises(ServiceTokenError, match="usable access token"):
            await ServiceTokenSource(TOKEN_URL, API_KEY, client=http).token()


async def test_an_unreachable_identity_service_is_an_error() -> None:
    tokens = ServiceTokenSource(f"http://127.0.0.1:{free_port()}/auth/token", API_KEY)
    try:
        with pytest.raises(ServiceTokenError, match="cannot reach"):
            await tokens.token()
    finally:
        await tokens.aclose()
