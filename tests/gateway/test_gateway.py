"""The edge gateway against a real upstream server on 127.0.0.1.

Most tests drive the gateway in-process through httpx's ASGITransport (with its lifespan
entered, so the shared upstream client exists); the gateway always talks to the upstream
over real sockets. The last group runs `python -m microforge.gateway` as a real server.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from microforge.gateway import create_gateway
from microforge.runner.ports import free_port

HERE = Path(__file__).parent
UPSTREAM_APP = HERE / "upstream_app.py"
MB = 1024 * 1024


# -- helpers ----------------------------------------------------------------------------


def wait_for_http(url: str, proc: subprocess.Popen[bytes], log: Path, deadline_s: float) -> None:
    """Poll `url` until it answers 200; fail with the server's log if it dies or stalls."""
    deadline = time.monotonic() + deadline_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=0.5, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} not ready after {deadline_s}s:\n{log.read_text()}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_server(
    argv: list[str],
    ready_url: str,
    log: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    procs.append(proc)
    wait_for_http(ready_url, proc, log, deadline_s=30)


@pytest.fixture(scope="module")
def upstream(
    tmp_path_factory: pytest.TempPathFactory, server_processes: list[subprocess.Popen[bytes]]
) -> str:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("upstream") / "upstream.log"
    start_server(
        [sys.executable, str(UPSTREAM_APP), str(port)],
        f"{base}/health/ready",
        log,
        server_processes,
    )
    return base


@pytest.fixture
def dead_url() -> str:
    """A base URL nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


@asynccontextmanager
async def gateway(routes: dict[str, str], **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_gateway(routes, **options)
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 4567))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw.example") as client,
    ):
        yield client


@pytest.fixture
async def gw(upstream: str) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway({"catalog": upstream, "api": f"{upstream}/echo"}) as client:
        yield client


def header_values(echo: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key == name]


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["detail"]
    return body


async def chunked(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# -- routing ----------------------------------------------------------------------------


async def test_index_lists_services(gw: httpx.AsyncClient) -> None:
    response = await gw.get("/")
    assert response.status_code == 200
    assert response.json() == {
        "name": "microforge gateway",
        "services": [
            {
                "name": "catalog",
                "url": "/catalog/",
                "docs": "/catalog/docs",
                "openapi": "/catalog/openapi.json",
            },
            {"name": "api", "url": "/api/", "docs": "/api/docs", "openapi": "/api/openapi.json"},
        ],
    }


async def test_prefix_is_stripped_and_query_kept(gw: httpx.AsyncClient) -> None:
    response = await gw.get("/catalog/echo/items/42?q=a%20b&tag=x&tag=y")
    assert response.status_code == 200
    echo = response.json()
    assert echo["method"] == "GET"
    assert echo["path"] == "/echo/items/42"
    assert echo["query"] == "q=a%20b&tag=x&tag=y"


async def test_base_url_path_and_encoded_segments_are_kept(gw: httpx.AsyncClient) -> None:
    echo = (await gw.get("/api/files/a%2Fb/c d")).json()
    assert echo["raw_path"] == "/echo/files/a%2Fb/c%20d"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"])
async def test_every_method_is_proxied(gw: httpx.AsyncClient, method: str) -> None:
    response = await gw.request(method, "/catalog/echo/thing", content=b"payload")
    assert response.status_code == 200
    echo = response.json()
    assert echo["method"] == method
    assert echo["body"] == "payload"


async def test_bare_service_name_redirects_to_trailing_slash(gw: httpx.AsyncClient) -> None:
    response = await gw.get("/catalog?x=1")
    assert response.status_code == 307
    assert response.headers["location"] == "/catalog/?x=1"


async def test_unknown_service_is_a_404_problem(gw: httpx.AsyncClient) -> None:
    body = assert_problem(await gw.get("/nope/items"), 404)
    assert "nope" in body["detail"]
    assert_problem(await gw.get("/nope"), 404)


async def test_method_not_allowed_on_gateway_endpoints_is_a_problem(
    gw: httpx.AsyncClient,
) -> None:
    response = await gw.post("/")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


def test_invalid_routes_are_rejected() -> None:
    with pytest.raises(ValueError, match="reserved"):
        create_gateway({"health": "http://127.0.0.1:1"})
    with pytest.raises(ValueError, match="invalid service name"):
        create_gateway({"a/b": "http://127.0.0.1:1"})
    with pytest.raises(ValueError, match="invalid URL"):
        create_gateway({"catalog": "ftp://127.0.0.1:1"})


# -- bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_large_request_body_arrives_intact(gw: httpx.AsyncClient, framing: str) -> None:
    data = os.urandom(6 * MB)
    content = data if framing == "content-length" else chunked(data)
    response = await gw.post("/catalog/echo/upload", content=content)
    assert response.status_code == 200
    echo = response.json()
    assert echo["body_length"] == len(data)
    assert echo["body_sha256"] == hashlib.sha256(data).hexdigest()


async def test_streamed_response_arrives_intact(gw: httpx.AsyncClient) -> None:
    response = await gw.get("/catalog/stream", params={"size": 5 * MB, "seed": 7})
    assert response.status_code == 200
    assert len(response.content) == 5 * MB
    assert hashlib.sha256(response.content).hexdigest() == response.headers["x-body-sha256"]


async def test_get_without_body_is_not_sent_chunked(gw: httpx.AsyncClient) -> None:
    echo = (await gw.get("/catalog/echo")).json()
    assert header_values(echo, "transfer-encoding") == []
    assert echo["body_length"] == 0


# -- headers ----------------------------------------------------------------------------


async def test_forwarded_headers(gw: httpx.AsyncClient) -> None:
    response = await gw.get("/catalog/echo", headers={"x-forwarded-for": "203.0.113.9"})
    echo = response.json()
    assert header_values(echo, "x-forwarded-for") == ["203.0.113.9, 10.1.2.3"]
    assert header_values(echo, "x-forwarded-proto") == ["http"]
    assert header_values(echo, "x-forwarded-host") == ["gw.example"]
    assert header_values(echo, "x-forwarded-prefix") == ["/catalog"]
    # The upstream is addressed by its own name, not the gateway's.
    assert header_values(echo, "host")[0].startswith("127.0.0.1:")


async def test_request_id_is_generated_and_returned(gw: httpx.AsyncClient) -> None:
    response = await gw.get("/catalog/echo")
    request_id = response.headers["x-request-id"]
    assert len(request_id) >= 16
    assert header_values(response.json(), "x-request-id") == [request_id]


async def test_incoming_request_id_is_kept(gw: httpx.AsyncClient) -> None:
    response = await gw.get("/catalog/echo", headers={"x-request-id": "trace-abc-123"})
    assert response.headers.get_list("x-request-id") == ["trace-abc-123"]
    assert header_values(response.json(), "x-request-id") == ["trace-abc-123"]


async def test_gateway_adds_no_headers_the_client_did_not_send(gw: httpx.AsyncClient) -> None:
    request = gw.build_request("GET", "/catalog/echo", headers={"x-only": "1"})
    for name in ("user-agent", "accept", "accept-encoding", "connection"):
        request.headers.pop(name, None)
    echo = (await gw.send(request)).json()
    names = {key for key, _ in echo["headers"]}
    # httpx's own defaults (user-agent, accept-encoding, ...) must not sneak in upstream:
    # an Accept-Encoding the client never sent would get it a compressed body.
    assert not names & {"user-agent", "accept", "accept-encoding"}
    assert header_values(echo, "x-only") == ["1"]


async def test_hop_by_hop_request_headers_are_dropped(gw: httpx.AsyncClient) -> None:
    headers = [
        ("connection", "keep-alive, x-drop-me"),
        ("x-drop-me", "1"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("upgrade", "h2c"),
        ("proxy-authorization", "Basic Zm9vOmJhcg=="),
        ("proxy-connection", "keep-alive"),
        ("x-keep-me", "yes"),
    ]
    echo = (await gw.get("/catalog/echo", headers=headers)).json()
    names = {key for key, _ in echo["headers"]}
    dropped = {
        "x-drop-me",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    }
    assert not names & dropped
    assert header_values(echo, "x-keep-me") == ["yes"]


async def test_hop_by_hop_response_headers_are_dropped(gw: httpx.AsyncClient) -> None:
    response = await gw.get("/catalog/hop")
    assert response.status_code == 200
    assert response.text == "hop"
    for name in ("x-upstream-hop", "keep-alive", "proxy-authenticate", "trailer", "upgrade"):
        assert name not in response.headers
    assert "x-upstream-hop" not in response.headers.get("connection", "")
    assert response.headers["x-end-to-end"] == "kept"


async def test_both_set_cookie_headers_are_kept_and_not_remembered(
    gw: httpx.AsyncClient,
) -> None:
    response = await gw.get("/catalog/cookies")
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 2
    assert any(c.startswith("session=abc") for c in cookies)
    assert any(c.startswith("theme=dark") for c in cookies)
    # The shared upstream client must not replay one user's cookies for the next.
    gw.cookies.clear()
    echo = (await gw.get("/catalog/echo")).json()
    assert header_values(echo, "cookie") == []


async def test_status_and_location_are_preserved(gw: httpx.AsyncClient) -> None:
    response = await gw.get("/catalog/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == "/catalog/items/7"


# -- upstream failures ------------------------------------------------------------------


async def test_upstream_down_is_a_502_problem(dead_url: str) -> None:
    async with gateway({"ghost": dead_url}) as client:
        body = assert_problem(await client.get("/ghost/anything"), 502)
    assert "ghost" in body["detail"]
    assert dead_url not in body["detail"]  # internal addresses stay internal


async def test_slow_upstream_is_a_504_problem(upstream: str) -> None:
    async with gateway({"catalog": upstream}, timeout=0.5) as client:
        started = time.monotonic()
        response = await client.get("/catalog/slow", params={"seconds": 10})
        elapsed = time.monotonic() - started
    assert_problem(response, 504)
    assert elapsed < 5


# -- health -----------------------------------------------------------------------------


async def test_health_live(gw: httpx.AsyncClient) -> None:
    response = await gw.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_health_ready_when_all_services_are_up(upstream: str) -> None:
    async with gateway({"catalog": upstream, "orders": upstream}) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["services"]["catalog"]["status"] == "ok"
    assert body["services"]["orders"]["status"] == "ok"


async def test_health_ready_is_503_when_one_service_is_down(upstream: str, dead_url: str) -> None:
    async with gateway({"catalog": upstream, "orders": dead_url}) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["services"]["catalog"]["status"] == "ok"
    assert body["services"]["orders"]["status"] == "unavailable"


# -- the real server: python -m microforge.gateway ---------------------------------------


@pytest.fixture(scope="module")
def gateway_server(
    upstream: str,
    tmp_path_factory: pytest.TempPathFactory,
    server_processes: list[subprocess.Popen[bytes]],
) -> str:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    argv = [sys.executable, "-m", "microforge.gateway", "--port", str(port)]
    argv += ["--route", f"catalog={upstream}", "--timeout", "10"]
    start_server(argv, f"{base}/health/ready", log, server_processes)
    return base


async def test_real_server_streams_both_ways(gateway_server: str) -> None:
    data = os.urandom(5 * MB)
    async with httpx.AsyncClient(base_url=gateway_server, trust_env=False) as client:
        upload = await client.post("/catalog/echo/upload", content=chunked(data))
        assert upload.status_code == 200
        assert upload.json()["body_sha256"] == hashlib.sha256(data).hexdigest()

        async with client.stream("GET", "/catalog/stream", params={"size": 5 * MB}) as response:
            assert response.status_code == 200
            digest = hashlib.sha256()
            chunks = 0
            async for chunk in response.aiter_raw():
                digest.update(chunk)
                chunks += 1
        assert digest.hexdigest() == response.headers["x-body-sha256"]
        assert chunks > 1


async def test_real_server_headers(gateway_server: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_server, trust_env=False) as client:
        response = await client.get("/catalog/cookies", headers={"x-request-id": "req-1"})
        assert len(response.headers.get_list("set-cookie")) == 2
        assert response.headers.get_list("x-request-id") == ["req-1"]
        # Exactly one Date and Server: the upstream's, relayed.
        assert len(response.headers.get_list("date")) == 1
        assert len(response.headers.get_list("server")) == 1
        echo = (await client.get("/catalog/echo")).json()
        assert header_values(echo, "x-forwarded-for") == ["127.0.0.1"]
        assert header_values(echo, "x-forwarded-host") == [gateway_server.removeprefix("http://")]
        own = await client.get("/nope/")
        assert_problem(own, 404)
        assert len(own.headers.get_list("date")) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--route", "catalog"], "expected NAME=URL"),
        (["--route", "catalog="], "expected NAME=URL"),
        (["--route", "=http://127.0.0.1:1"], "expected NAME=URL"),
        (["--route", "catalog=ftp://127.0.0.1:1"], "invalid URL"),
        (["--route", "catalog=http://127.0.0.1:99999"], "invalid URL"),
        (["--route", "health=http://127.0.0.1:1"], "reserved"),
        (["--route", "a b=http://127.0.0.1:1"], "invalid service name"),
        (["--route", "c=http://127.0.0.1:1", "--route", "c=http://127.0.0.1:2"], "more than once"),
        (["--route", "c=http://127.0.0.1:1", "--timeout", "-1"], "invalid duration"),
        (["--route", "c=http://127.0.0.1:1", "--port", "http"], "invalid port"),
        ([], "--route"),
    ],
)
def test_cli_rejects_bad_arguments(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "microforge.gateway", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr
