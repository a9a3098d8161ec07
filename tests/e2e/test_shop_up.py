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
    return out


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
    exercised = 0
    for service in plan.services:
        helpers = _load_helpers(project / "services" / service.name)
        async with httpx.AsyncClient(base_url=f"{base}/{service.name}") as client:
            for entity in service.entities:
                collection = f"/{entity.collection}"
                item = await getattr(helpers, f"create_{entity.snake}")(client)
                one = await client.get(f"{collection}/{item['id']}")
                assert one.status_code == 200
                assert one.json()["id"] == item["id"]
                listed = await client.get(collection, params={"id": item["id"]})
                assert listed.json()["total"] == 1
                patched = await client.patch(f"{collection}/{item['id']}", json={})
                assert patched.status_code == 200
                assert patched.json() == one.json()
                removed = await client.delete(f"{collection}/{item['id']}")
                assert removed.status_code == 204, removed.text
                assert (await client.get(f"{collection}/{item['id']}")).status_code == 404
                exercised += 1
    assert exercised == sum(len(s.entities) for s in plan.services)


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
    deadline = time.monotonic() + 10
    while not all(port_is_free(p) for p in range(port, port + service_count + 1)):
        assert time.monotonic() < deadline, "a service still holds its port"
        time.sleep(0.1)
