"""authenticate() and Caller: the HTTP face of token verification in a FastAPI service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from support.auth_tokens import AUDIENCE, ISSUER, JWKS_URL, JwksServer

from microforge.runtime.auth.authenticate import Caller
from microforge.runtime.auth.keys import KeyStore
from microforge.runtime.auth.tokens import RemoteJwks, StaticJwks, TokenIssuer, TokenVerifier
from microforge.runtime.problems import install_problem_handlers

CHALLENGE = 'Bearer error="invalid_token"'


def service(verifier: TokenVerifier | None) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    if verifier is not None:
        app.state.token_verifier = verifier

    @app.get("/whoami")
    async def whoami(caller: Caller) -> dict[str, Any]:
        return {
            "subject": caller.subject,
            "kind": caller.kind,
            "roles": sorted(caller.roles),
            "tenant": caller.tenant,
            "authenticated": caller.authenticated,
        }

    return app


@dataclass
class Service:
    issuer: TokenIssuer
    http: httpx.AsyncClient


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Service]:
    store = KeyStore.ensure(tmp_path)
    verifier = TokenVerifier(StaticJwks(store.jwks()), ISSUER, AUDIENCE)
    transport = httpx.ASGITransport(app=service(verifier))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        yield Service(TokenIssuer(store, ISSUER, AUDIENCE), http)


async def test_no_authorization_header_is_anonymous(svc: Service) -> None:
    response = await svc.http.get("/whoami")
    assert response.status_code == 200
    assert response.json() == {
        "subject": "",
        "kind": "anonymous",
        "roles": [],
        "tenant": None,
        "authenticated": False,
    }


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_valid_token_is_the_caller(svc: Service, scheme: str) -> None:
    token, _ = svc.issuer.issue("user-7", "user", ["member", "staff"], tenant="t1")
    response = await svc.http.get("/whoami", headers={"Authorization": f"{scheme} {token}"})
    assert response.status_code == 200
    assert response.json() == {
        "subject": "user-7",
        "kind": "user",
        "roles": ["member", "staff"],
        "tenant": "t1",
        "authenticated": True,
    }


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer not-a-token", id="bad-token"),
        pytest.param("Bearer ", id="empty-token"),
        pytest.param("Bearer", id="scheme-only"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic"),
        pytest.param("Token abc", id="other-scheme"),
        pytest.param("", id="empty-header"),
        pytest.param("eyJhbGciOiJFZERTQSJ9.e30.sig", id="no-scheme"),
    ],
)
async def test_bad_credentials_are_a_401_problem(svc: Service, authorization: str) -> None:
    response = await svc.http.get("/whoami", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == CHALLENGE
    body = response.json()
    assert body["status"] == 401
    assert body["instance"] == "/whoami"
    # The same words for every reason, and never the token itself.
    assert body["detail"] == "The access token is missing, malformed, expired or not valid here."
    credential = authorization.partition(" ")[2]
    assert not credential or credential not in response.text


async def test_tampered_token_is_401_without_echo(svc: Service) -> None:
    token, _ = svc.issuer.issue("user-7", "user", ["member"])
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = await svc.http.get("/whoami", headers={"Authorization": f"Bearer {tampered}"})
    assert response.status_code == 401
    assert tampered not in response.text
    assert token.split(".")[2][:-4] not in response.text


async def test_keys_unavailable_is_503_not_401(tmp_path: Path) -> None:
    store = KeyStore.ensure(tmp_path)
    server = JwksServer(store)
    server.status = 502
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app)) as jwks_http:
        verifier = TokenVerifier(RemoteJwks(JWKS_URL, client=jwks_http), ISSUER, AUDIENCE)
        transport = httpx.ASGITransport(app=service(verifier))
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
            token, _ = TokenIssuer(store, ISSUER, AUDIENCE).issue("u", "user", [])
            response = await http.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "10"
    assert "www-authenticate" not in response.headers


async def test_openapi_declares_the_bearer_scheme(svc: Service) -> None:
    schema = (await svc.http.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from the identity service (POST /auth/login).",
    }
    operation = schema["paths"]["/whoami"]["get"]
    assert operation["security"] == [{"bearer": []}]
    # The Authorization header is the scheme's business, not a documented parameter.
    assert "parameters" not in operation


async def test_a_token_without_a_configured_verifier_is_a_server_error() -> None:
    transport = httpx.ASGITransport(app=service(None), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        assert (await http.get("/whoami")).json()["kind"] == "anonymous"
        response = await http.get("/whoami", headers={"Authorization": "Bearer x"})
    assert response.status_code == 500
