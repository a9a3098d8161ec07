"""The gateway's defence in depth: bearer tokens checked at the edge, identity headers, CORS.

The upstream is the gateway tests' echo server, run as a real process on 127.0.0.1 (the
gateway only talks to upstreams over sockets). The gateway runs in-process through
httpx's ASGITransport, except in the last test, which starts `python -m
microforge.gateway --jwks-url ...` against a JWKS served by a real uvicorn.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from support.auth_tokens import AUDIENCE, ISSUER, JwksServer

from microforge.gateway import create_gateway
from microforge.gateway.__main__ import main as gateway_main
from microforge.gateway.app import check_origin
from microforge.runner.ports import free_port
from microforge.runtime.auth.keys import KeyStore
from microforge.runtime.auth.tokens import RemoteJwks, StaticJwks, TokenIssuer, TokenVerifier

UPSTREAM_APP = Path(__file__).parents[2] / "gateway" / "upstream_app.py"
APP_ORIGIN = "https://app.example.com"
CHALLENGE = 'Bearer error="invalid_token"'


# -- servers ----------------------------------------------------------------------------


def wait_until_ready(url: str, proc: subprocess.Popen[bytes] | None, log: Path | None) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log and log.read_text()}")
        try:
            if httpx.get(url, timeout=0.5, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} not ready in time:\n{log and log.read_text()}")
        time.sleep(0.05)


@contextmanager
def process(argv: list[str], ready_url: str, log: Path) -> Iterator[None]:
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(ready_url, proc, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("upstream") / "upstream.log"
    with process([sys.executable, str(UPSTREAM_APP), str(port)], f"{base}/health/ready", log):
        yield base


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    return KeyStore.ensure(tmp_path_factory.mktemp("keys"))


def issue(store: KeyStore, subject: str = "user-1", roles: tuple[str, ...] = ()) -> str:
    return TokenIssuer(store, ISSUER, AUDIENCE).issue(subject, "user", roles)[0]


@asynccontextmanager
async def gateway(upstream: str, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_gateway({"catalog": upstream}, **options)
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 4567))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw.example") as client,
    ):
        yield client


def verifier(store: KeyStore) -> TokenVerifier:
    return TokenVerifier(StaticJwks(store.jwks()), ISSUER, AUDIENCE)


def upstream_headers(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.text
    seen: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        seen.setdefault(name, []).append(value)
    return seen


def assert_edge_refusal(response: httpx.Response, status: int = 401) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert "headers" not in body  # the gateway answered; the echo upstream did not
    assert response.headers["x-request-id"]


SPOOFED = {"X-Auth-Subject": "admin", "X-Auth-Roles": "admin", "x-auth-tenant": "t0"}


# -- token checks at the edge -----------------------------------------------------------


async def test_without_a_verifier_spoofed_identity_headers_are_stripped(upstream: str) -> None:
    async with gateway(upstream) as gw:
        response = await gw.get("/catalog/echo", headers={**SPOOFED, "Authorization": "Bearer x"})
    headers = upstream_headers(response)
    assert not [name for name in headers if name.startswith("x-auth-")]
    # Nothing to check the token with: it goes to the service, which will.
    assert headers["authorization"] == ["Bearer x"]


async def test_valid_token_adds_identity_headers(upstream: str, store: KeyStore) -> None:
    token = issue(store, "user-9", ("staff", "admin"))
    async with gateway(upstream, token_verifier=verifier(store)) as gw:
        response = await gw.get(
            "/catalog/echo", headers={**SPOOFED, "Authorization": f"Bearer {token}"}
        )
    headers = upstream_headers(response)
    assert headers["x-auth-subject"] == ["user-9"]
    assert headers["x-auth-roles"] == ["admin,staff"]
    assert "x-auth-tenant" not in headers
    assert headers["authorization"] == [f"Bearer {token}"]  # services verify it again


async def test_token_without_roles_gets_an_empty_roles_header(
    upstream: str, store: KeyStore
) -> None:
    async with gateway(upstream, token_verifier=verifier(store)) as gw:
        response = await gw.get(
            "/catalog/echo", headers={"Authorization": f"bearer {issue(store)}"}
        )
    headers = upstream_headers(response)
    assert headers["x-auth-subject"] == ["user-1"]
    assert headers["x-auth-roles"] == [""]


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer not-a-token", id="garbage"),
        pytest.param("Bearer", id="empty"),
        pytest.param("BEARER eyJhbGciOiJub25lIn0.e30.", id="alg-none"),
    ],
)
async def test_bad_token_is_refused_at_the_edge(
    upstream: str, store: KeyStore, authorization: str
) -> None:
    async with gateway(upstream, token_verifier=verifier(store)) as gw:
        response = await gw.get("/catalog/echo", headers={"Authorization": authorization})
    assert_edge_refusal(response)
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.json()["detail"] == "the access token is malformed, expired or not valid here"


async def test_token_for_another_audience_is_refused(upstream: str, store: KeyStore) -> None:
    foreign = TokenIssuer(store, ISSUER, "urn:microforge:other").issue("u", "user", [])[0]
    async with gateway(upstream, token_verifier=verifier(store)) as gw:
        response = await gw.get("/catalog/echo", headers={"Authorization": f"Bearer {foreign}"})
    assert_edge_refusal(response)


async def test_two_authorization_headers_are_refused(upstream: str, store: KeyStore) -> None:
    headers = [("Authorization", "Basic dTpw"), ("Authorization", f"Bearer {issue(store)}")]
    async with gateway(upstream, token_verifier=verifier(store)) as gw:
        response = await gw.get("/catalog/echo", headers=headers)
    assert_edge_refusal(response)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-authorization"),
        pytest.param({"Authorization": "Basic dTpw"}, id="basic"),
    ],
)
async def test_requests_without_a_bearer_token_pass_through(
    upstream: str, store: KeyStore, headers: dict[str, str]
) -> None:
    async with gateway(upstream, token_verifier=verifier(store)) as gw:
        response = await gw.get("/catalog/echo", headers={**SPOOFED, **headers})
    seen = upstream_headers(response)
    assert not [name for name in seen if name.startswith("x-auth-")]
    assert seen.get("authorization", []) == list(headers.values())


async def test_unreachable_keys_are_a_503_at_the_edge(upstream: str, store: KeyStore) -> None:
    jwks = RemoteJwks(f"http://127.0.0.1:{free_port()}/.well-known/jwks.json", timeout=2)
    async with gateway(upstream, token_verifier=TokenVerifier(jwks, ISSUER, AUDIENCE)) as gw:
        response = await gw.get(
            "/catalog/echo", headers={"Authorization": f"Bearer {issue(store)}"}
        )
    assert_edge_refusal(response, 503)
    assert response.headers["retry-after"] == "10"


# -- CORS -------------------------------------------------------------------------------


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key, if-match",
    }


async def test_cors_is_closed_by_default(upstream: str) -> None:
    async with gateway(upstream) as gw:
        pre = await gw.options("/catalog/echo", headers=preflight(APP_ORIGIN))
        simple = await gw.get("/catalog/echo", headers={"Origin": APP_ORIGIN})
    for response in (pre, simple):
        assert not [h for h in response.headers if h.startswith("access-control-")]


async def test_cors_is_open_for_a_configured_origin(upstream: str, store: KeyStore) -> None:
    options = {
        "cors_origins": [APP_ORIGIN, "http://localhost:5173/"],
        "token_verifier": verifier(store),
    }
    async with gateway(upstream, **options) as gw:
        pre = await gw.options("/catalog/echo", headers=preflight(APP_ORIGIN))
        simple = await gw.get(
            "/catalog/echo",
            headers={"Origin": "http://localhost:5173", "Authorization": f"Bearer {issue(store)}"},
        )
        refused = await gw.get(
            "/catalog/echo", headers={"Origin": APP_ORIGIN, "Authorization": "Bearer bad"}
        )
        stranger = await gw.options("/catalog/echo", headers=preflight("https://evil.example"))
        stranger_get = await gw.get("/catalog/echo", headers={"Origin": "https://evil.example"})

    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == APP_ORIGIN
    assert pre.headers["access-control-allow-credentials"] == "true"
    allowed = {h.strip().lower() for h in pre.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key", "if-match"} <= allowed
    assert "POST" in pre.headers["access-control-allow-methods"]

    assert simple.headers["access-control-allow-origin"] == "http://localhost:5173"
    exposed = {
        h.strip().lower() for h in simple.headers["access-control-expose-headers"].split(",")
    }
    # A browser app reads the ETag for If-Match and sees replays of its retried POSTs.
    assert {"etag", "idempotent-replayed", "idempotency-key-expires"} <= exposed
    assert upstream_headers(simple)["x-auth-subject"] == ["user-1"]
    # The browser app may read why it was refused.
    assert_edge_refusal(refused)
    assert refused.headers["access-control-allow-origin"] == APP_ORIGIN

    assert stranger.status_code == 400
    assert "access-control-allow-origin" not in stranger.headers
    assert "access-control-allow-origin" not in stranger_get.headers


@pytest.mark.parametrize(
    "origin",
    ["*", "https://app.example.com/path", "ftp://app.example.com", "app.example.com", "https://"],
)
def test_bad_cors_origins_are_refused(origin: str) -> None:
    with pytest.raises(ValueError, match="invalid CORS origin"):
        check_origin(origin)
    with pytest.raises(ValueError, match="invalid CORS origin"):
        create_gateway({"catalog": "http://127.0.0.1:1"}, cors_origins=[origin])


# -- the command line -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--jwks-url", "http://127.0.0.1:1/jwks"], "--jwks-url needs --issuer and --audience"),
        (["--issuer", ISSUER], "only apply with --jwks-url"),
        (["--cors-origin", "*"], "invalid CORS origin"),
        (["--jwks-url", "nope"], "invalid URL"),
    ],
)
def test_command_line_errors(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        gateway_main(["--route", "catalog=http://127.0.0.1:1", *extra])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@contextmanager
def threaded_uvicorn(app: Any) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the JWKS server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_real_gateway_verifies_tokens_against_a_remote_jwks(
    upstream: str, store: KeyStore, tmp_path: Path
) -> None:
    jwks = JwksServer(store)
    with threaded_uvicorn(jwks.app) as identity:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "microforge.gateway", "--port", str(port)]
        argv += ["--route", f"catalog={upstream}"]
        argv += ["--jwks-url", f"{identity}/.well-known/jwks.json"]
        argv += ["--issuer", ISSUER, "--audience", AUDIENCE, "--cors-origin", APP_ORIGIN]
        with (
            process(argv, f"{base}/health/ready", tmp_path / "gateway.log"),
            httpx.Client(base_url=base, trust_env=False) as client,
        ):
            token = issue(store, "user-5", ("member",))
            good = client.get(
                "/catalog/echo",
                headers={"Authorization": f"Bearer {token}", "Origin": APP_ORIGIN},
            )
            bad = client.get("/catalog/echo", headers={"Authorization": "Bearer nope"})
    headers = upstream_headers(good)
    assert headers["x-auth-subject"] == ["user-5"]
    assert headers["x-auth-roles"] == ["member"]
    assert good.headers["access-control-allow-origin"] == APP_ORIGIN
    assert_edge_refusal(bad)
    assert jwks.fetches == 1
