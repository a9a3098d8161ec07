"""The main job end to end: seed and `up` the shop example, use every entity of every
service through the gateway, then stop it with Ctrl-C and check nothing is left running."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from support.project import SHOP

from microforge.generator.plan import build_plan
from microforge.runner.ports import free_port, port_is_free
from microforge.spec import load_spec

READY_DEADLINE_S = 90.0
ADMIN_EMAIL = "admin@shop.example.com"
ADMIN_PASSWORD = "correct horse battery staple"
CUSTOMER_PASSWORD = "a long enough passphrase"


def _microforge(*args: str) -> list[str]:
    return [sys.executable, "-m", "microforge.cli", *args]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "shop"
    seeded = subprocess.run(
        _microforge("seed", str(SHOP), "-o", str(out)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert "new rows" in seeded.stdout
    # The first admin comes from the CLI: signup only ever grants the signup roles.
    created = subprocess.run(
        _microforge(
            "users", "create", str(out), "--email", ADMIN_EMAIL, "--role", "admin",
            "--role", "staff", "--field", "display_name=Admin", "--password-stdin",
        ),
        input=ADMIN_PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    assert "Created user" in created.stdout
    # A user-owned custom route in orders that calls inventory with the orders service's
    # own credentials (east-west traffic is authenticated like any other).
    routes = out / "services/orders/orders_service/custom/routes.py"
    routes.write_text(EAST_WEST_ROUTE)
    return out


EAST_WEST_ROUTE = """
from fastapi import APIRouter, Request

from microforge.runtime.service_app import Repositories


def router(repos: Repositories) -> APIRouter:
    api = APIRouter(tags=["custom"])

    @api.get("/stock/warehouses")
    async def warehouses(request: Request) -> dict[str, int]:
        inventory = request.app.state.peers.client("inventory")
        response = await inventory.get("/warehouses")
        return {"status": response.status_code, "total": response.json().get("total", -1)}

    return api
"""


def _login(base: str, email: str, password: str) -> dict[str, str]:
    response = httpx.post(
        f"{base}/identity/auth/login", json={"email": email, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _signup(base: str, email: str) -> tuple[str, dict[str, str]]:
    body = {"email": email, "password": CUSTOMER_PASSWORD, "display_name": email.split("@")[0]}
    response = httpx.post(f"{base}/identity/auth/signup", json=body)
    assert response.status_code == 201, response.text
    tokens = response.json()
    return tokens["user"]["id"], {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture(scope="module")
def gateway(project: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        _microforge("up", str(project), "--port", str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_DEADLINE_S
    while True:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the shop did not become ready"
        time.sleep(0.2)
    yield base, process
    if process.poll() is None:
        # Ctrl-C, as a user would: `up` stops its services. A SIGKILL here used to leave
        # them running as orphans when a test failed before the Ctrl-C test.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _load_helpers(service_dir: Path) -> ModuleType:
    """The generated conftest of a service knows how to build valid bodies for it."""
    sys.path.insert(0, str(service_dir))
    spec = importlib.util.spec_from_file_location(
        f"e2e_{service_dir.name}_helpers", service_dir / "tests" / "conftest.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gateway_lists_every_service(gateway: tuple[str, Any]) -> None:
    base, _ = gateway
    listing = httpx.get(f"{base}/").json()
    assert sorted(s["name"] for s in listing["services"]) == sorted(load_spec(SHOP).services)
    for service in listing["services"]:
        docs = httpx.get(f"{base}{service['docs']}")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()
        openapi = httpx.get(f"{base}{service['openapi']}").json()
        assert openapi["servers"] == [{"url": f"/{service['name']}"}]


def test_seed_rows_are_served(gateway: tuple[str, Any]) -> None:
    base, _ = gateway
    books = httpx.get(f"{base}/catalog/categories", params={"slug": "laptops"}).json()
    assert books["total"] == 1
    parent = httpx.get(f"{base}/catalog/categories/{books['items'][0]['parent_id']}").json()
    assert parent["slug"] == "electronics"


async def test_every_entity_of_every_service_through_the_gateway(
    project: Path, gateway: tuple[str, Any]
) -> None:
    base, _ = gateway
    plan = build_plan(load_spec(SHOP))
    admin = _login(base, ADMIN_EMAIL, ADMIN_PASSWORD)
    exercised = 0
    for service in plan.services:
        helpers = _load_helpers(project / "services" / service.name)
        # The generated tests' hook: every POST carries a fresh Idempotency-Key (orders and
        # payments require one).
        hooks = {"request": [helpers.idempotency_key]}
        async with httpx.AsyncClient(
            base_url=f"{base}/{service.name}", headers=admin, event_hooks=hooks
        ) as client:
            for entity in service.entities:
                collection = f"/{entity.collection}"
                item = await getattr(helpers, f"create_{entity.snake}")(client)
                one = await client.get(f"{collection}/{item['id']}")
                assert one.status_code == 200
                assert one.json()["id"] == item["id"]
                listed = await client.get(collection, params={"id": item["id"]})
                assert listed.json()["total"] == 1
                # If-Match travels through the gateway both ways (some entities require it).
                current = {"If-Match": one.headers["etag"]}
                patched = await client.patch(f"{collection}/{item['id']}", json={}, headers=current)
                assert patched.status_code == 200
                assert patched.json() == one.json()
                assert patched.headers["etag"] == one.headers["etag"]  # nothing changed
                stale = {"If-Match": '"v99-0"'}
                refused = await client.delete(f"{collection}/{item['id']}", headers=stale)
                assert refused.status_code == 412, refused.text
                removed = await client.delete(f"{collection}/{item['id']}", headers=current)
                assert removed.status_code == 204, removed.text
                assert (await client.get(f"{collection}/{item['id']}")).status_code == 404
                exercised += 1
    assert exercised == sum(len(s.entities) for s in plan.services)


def test_customers_see_only_their_own_orders(gateway: tuple[str, Any]) -> None:
    base, _ = gateway
    alice_id, alice = _signup(base, "alice@shop.example.com")
    _, bob = _signup(base, "bob@shop.example.com")
    order = {
        "number": "E2E-1",
        "total": "10.00",
        "shipping_address": {"city": "Berlin"},
    }
    keyless = httpx.post(f"{base}/orders/orders", json=order, headers=alice)
    assert keyless.status_code == 400, keyless.text  # the spec requires an Idempotency-Key
    keyed = {**alice, "Idempotency-Key": '"checkout-e2e-1"'}
    created = httpx.post(f"{base}/orders/orders", json=order, headers=keyed)
    assert created.status_code == 201, created.text
    # A retry (a timeout on the client's side, say) gets the same order, not a second one;
    # bob's identical key is his own.
    retried = httpx.post(f"{base}/orders/orders", json=order, headers=keyed)
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.content == created.content
    bobs = httpx.post(
        f"{base}/orders/orders",
        json={**order, "number": "E2E-2"},
        headers={**bob, "Idempotency-Key": '"checkout-e2e-1"'},
    )
    assert bobs.status_code == 201, bobs.text
    assert "idempotent-replayed" not in bobs.headers
    assert created.json()["customer_id"] == alice_id  # stamped from the token
    url = f"{base}/orders/orders/{created.json()['id']}"
    assert httpx.get(url, headers=alice).status_code == 200
    # Orders are cached (cache-aside): alice's read put her order in the cache, and bob
    # still cannot read it, nor see it in a list page.
    assert httpx.get(url, headers=bob).status_code == 404
    assert httpx.get(f"{base}/orders/orders", headers=alice).json()["total"] == 1
    bob_sees = httpx.get(f"{base}/orders/orders", headers=bob).json()["items"]
    assert [o["id"] for o in bob_sees] == [bobs.json()["id"]]
    assert httpx.get(url).status_code == 401
    paid = httpx.patch(url, json={"status": "paid"}, headers=alice)
    assert paid.status_code == 403  # only staff update orders


def test_anyone_reads_active_products_and_staff_see_drafts(gateway: tuple[str, Any]) -> None:
    base, _ = gateway
    staff = _login(base, ADMIN_EMAIL, ADMIN_PASSWORD)
    # Products are cached, lists too: staff first, so a shared entry would leak drafts.
    everything = httpx.get(f"{base}/catalog/products", headers=staff).json()
    public = httpx.get(f"{base}/catalog/products").json()
    assert {p["status"] for p in public["items"]} == {"active"}
    assert everything["total"] > public["total"]
    assert httpx.get(f"{base}/catalog/products").json() == public  # the cached page
    customer = httpx.post(
        f"{base}/catalog/tags",
        json={"name": "sale"},
        headers=_signup(base, "c@shop.example.com")[1],
    )
    assert customer.status_code == 403


def test_http_caching_through_the_gateway(gateway: tuple[str, Any]) -> None:
    base, _ = gateway
    url = f"{base}/catalog/categories"
    anonymous = httpx.get(url)
    assert anonymous.headers["cache-control"] == "public, max-age=60"
    assert anonymous.headers["vary"] == "Authorization"
    again = httpx.get(url, headers={"If-None-Match": anonymous.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    staff = _login(base, ADMIN_EMAIL, ADMIN_PASSWORD)
    # Anything a token unlocked is private, even on a public entity.
    assert httpx.get(url, headers=staff).headers["cache-control"] == "private, max-age=60"
    # A write changes the ETag at once (write-through).
    changed = httpx.patch(f"{url}/1", json={"position": 7}, headers=staff)
    assert changed.status_code == 200, changed.text
    after = httpx.get(url, headers={"If-None-Match": anonymous.headers["etag"]})
    assert after.status_code == 200
    assert 7 in [c["position"] for c in after.json()["items"]]


def test_cache_administration(gateway: tuple[str, Any]) -> None:
    base, _ = gateway
    staff = _login(base, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert httpx.get(f"{base}/catalog/_cache").status_code == 401
    customer = _signup(base, "cache@shop.example.com")[1]
    assert httpx.get(f"{base}/catalog/_cache", headers=customer).status_code == 403
    httpx.get(f"{base}/catalog/products")
    stats = httpx.get(f"{base}/catalog/_cache", headers=staff).json()
    assert stats["Product"]["strategy"] == "read-through"
    assert stats["Product"]["warmed"] >= 1  # the spec's warm-up query ran at start
    assert stats["Product"]["hits"] + stats["Product"]["misses"] >= 1
    metrics = httpx.get(f"{base}/catalog/metrics", headers=staff)
    assert metrics.status_code == 200
    assert 'microforge_cache_hits_total{entity="Product",service="catalog"}' in metrics.text
    assert httpx.get(f"{base}/catalog/metrics").status_code == 401
    cleared = httpx.delete(f"{base}/catalog/_cache/Product", headers=staff)
    assert cleared.status_code == 204
    assert httpx.delete(f"{base}/catalog/_cache/Nope", headers=staff).status_code == 404


def test_the_gateway_refuses_bad_tokens_at_the_edge(gateway: tuple[str, Any]) -> None:
    base, _ = gateway
    forged = httpx.get(
        f"{base}/catalog/products", headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."}
    )
    assert forged.status_code == 401
    assert forged.headers["content-type"] == "application/problem+json"
    assert forged.headers["www-authenticate"].startswith("Bearer")
    # CORS is closed unless configured: no allow-origin header for a foreign origin.
    preflight = httpx.options(
        f"{base}/catalog/products",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_a_machine_client_calls_a_service_with_an_api_key(gateway: tuple[str, Any]) -> None:
    from microforge.runtime.auth.service_client import ServiceTokenSource, service_client

    base, _ = gateway
    admin = _login(base, ADMIN_EMAIL, ADMIN_PASSWORD)
    made = httpx.post(
        f"{base}/identity/auth/api-keys",
        json={"name": "stock-sync", "roles": ["staff"]},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    tokens = ServiceTokenSource(f"{base}/identity/auth/token", key)
    async with service_client(f"{base}/inventory", tokens) as client:
        response = await client.get("/warehouses")
        assert response.status_code == 200, response.text
    await tokens.aclose()
    assert httpx.get(f"{base}/inventory/warehouses").status_code == 401
    revoked = httpx.delete(f"{base}/identity/auth/api-keys/{made.json()['id']}", headers=admin)
    assert revoked.status_code == 204
    refused = httpx.post(
        f"{base}/identity/auth/token",
        data={"grant_type": "client_credentials", "client_secret": key},
    )
    assert refused.status_code == 401


def test_services_call_each_other_with_their_own_credentials(gateway: tuple[str, Any]) -> None:
    base, _ = gateway
    # inventory is staff-only: anonymous callers are refused ...
    assert httpx.get(f"{base}/inventory/warehouses").status_code == 401
    # ... while orders, whose own API key holds the staff role, gets through.
    relayed = httpx.get(f"{base}/orders/stock/warehouses")
    assert relayed.status_code == 200, relayed.text
    assert relayed.json()["status"] == 200
    assert relayed.json()["total"] >= 0


def test_bad_requests_are_problems_through_the_gateway(gateway: tuple[str, Any]) -> None:
    base, _ = gateway
    bad = httpx.get(f"{base}/catalog/products", params={"price__between": "1"})
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    assert httpx.get(f"{base}/nowhere/x").status_code == 404


def test_ctrl_c_stops_everything(project: Path, gateway: tuple[str, subprocess.Popen[str]]) -> None:
    base, process = gateway
    port = int(base.rsplit(":", 1)[1])
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "is up" in output
    service_count = len(load_spec(SHOP).services)
    deadline = time.monotonic() + 30  # SIGKILL comes after 5 s; a loaded CI box is slower
    while not all(port_is_free(p) for p in range(port, port + service_count + 1)):
        assert time.monotonic() < deadline, "a service still holds its port"
        time.sleep(0.1)
