"""A process killed in the middle of an idempotent request: the retry completes once.

The server inserts the payment inside the request's transaction and hangs there; the test
kills it with SIGKILL, starts a fresh process on the same database and retries with the
same key. The killed transaction never committed, so its row is gone; the key stays
locked until its lease ends (409 with Retry-After meanwhile), then the retry runs, once,
and later retries get its stored response.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa
from support.databases import free_port

from microforge.runtime.db import create_engine

HERE = Path(__file__).parent
LEASE = 6.0  # longer than a restart takes, so a retry meets the held key
BODY = {"amount": 999, "reference": "crash-1"}
KEY = {"Idempotency-Key": '"crash-key"'}


@asynccontextmanager
async def server(url: str, port: int, *, hang: bool) -> AsyncIterator[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parents[1])]),
        "PAYMENTS_HANG": "1" if hang else "0",
    }
    process = subprocess.Popen(
        [sys.executable, str(HERE / "crash_server.py"), url, str(port), str(LEASE)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    await client.get(f"http://127.0.0.1:{port}/health/live", timeout=1)
                    break
                except httpx.TransportError:
                    assert process.poll() is None, "the server died while starting"
                    assert time.monotonic() < deadline, "the server never started"
                    await asyncio.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


async def references(url: str) -> list[str]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(sa.text("SELECT reference FROM payments"))
            return [row[0] for row in result]
    finally:
        await engine.dispose()


async def test_a_retry_after_kill_9_in_the_middle_of_a_request_completes_once(
    engine_url: str,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with server(engine_url, port, hang=True) as doomed, httpx.AsyncClient() as client:
        hanging = asyncio.create_task(client.post(f"{base}/payments", json=BODY, headers=KEY))
        assert doomed.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(doomed.stdout.readline), 30)
        assert line.strip() == "hanging"  # the insert ran; its transaction is open
        doomed.kill()
        doomed.wait(timeout=30)
        killed_at = time.monotonic()
        try:
            await hanging
        except httpx.TransportError:
            pass  # the connection died with the process
        else:
            raise AssertionError("a killed server answered")

    assert await references(engine_url) == []  # the open transaction died with it

    async with server(engine_url, port, hang=False), httpx.AsyncClient() as client:
        statuses = []
        deadline = time.monotonic() + 30
        while True:
            response = await client.post(f"{base}/payments", json=BODY, headers=KEY)
            statuses.append(response.status_code)
            if response.status_code != 409:
                break
            assert response.headers["retry-after"] == "1"
            assert time.monotonic() < deadline, "the key never came free"
            await asyncio.sleep(0.1)
        freed_after = time.monotonic() - killed_at
        assert response.status_code == 201, response.text
        assert "idempotent-replayed" not in response.headers
        replay = await client.post(f"{base}/payments", json=BODY, headers=KEY)
        assert replay.headers.get("idempotent-replayed") == "true"
        assert replay.content == response.content

    assert await references(engine_url) == ["crash-1"]
    # A retry before the lease ended was refused with 409, not run twice.
    assert statuses[0] == 409 or freed_after >= LEASE
    print(
        f"kill -9 mid-request: {statuses.count(409)} retries answered 409 until the lease "
        f"ended ({freed_after:.2f} s after the kill, lease {LEASE} s); then one 201"
    )
