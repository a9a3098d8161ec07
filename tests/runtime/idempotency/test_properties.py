"""Property: whatever the keys, payloads, callers and timing, each key runs once.

Hypothesis draws rounds of requests; the requests of a round are sent concurrently, each
after its own small delay, so claims, waits and replays interleave differently every
example. For every (caller, key), exactly one request ran (the first to claim the key);
every request with its payload got its exact response, every other payload a 422, and
the database holds one row per (caller, key).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from support.runtime_service import create_database_engine

from microforge.runtime.db import sqlite_url
from microforge.runtime.idempotency.policy import IdempotencyPolicy

from .service import count_payments, create_app, metadata


@dataclass(frozen=True)
class Call:
    caller: str
    key: str
    amount: int
    delay: float  # seconds before it is sent, within its round


# Keys are any printable ASCII, quotes and backslashes included (sent escaped).
keys = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=24)


@st.composite
def schedules(draw: st.DrawFn) -> list[list[Call]]:
    """Rounds of calls over a few keys, so that keys repeat within and across rounds."""
    pool = draw(st.lists(keys, min_size=1, max_size=3, unique=True))
    calls = st.builds(
        Call,
        caller=st.sampled_from(["alice", "bob"]),
        key=st.sampled_from(pool),
        amount=st.sampled_from([1, 2]),
        delay=st.sampled_from([0.0, 0.0, 0.001, 0.005]),
    )
    return draw(st.lists(st.lists(calls, min_size=1, max_size=6), min_size=1, max_size=4))


def header(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def play(schedule: list[list[Call]], folder: Path) -> None:
    engine = await create_database_engine(sqlite_url(folder / "p.db"), metadata)
    app = create_app(engine, IdempotencyPolicy(wait=60))
    transport = httpx.ASGITransport(app=app)
    answers: list[tuple[Call, httpx.Response]] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def send(call: Call) -> tuple[Call, httpx.Response]:
            await asyncio.sleep(call.delay)
            response = await client.post(
                "/payments",
                json={"amount": call.amount},
                headers={"Idempotency-Key": header(call.key), "X-Caller": call.caller},
            )
            return call, response

        for round_ in schedule:
            answers += await asyncio.gather(*(send(call) for call in round_))
    stored_rows = await count_payments(engine)
    await engine.dispose()

    by_key: dict[tuple[str, str], list[tuple[Call, httpx.Response]]] = defaultdict(list)
    for call, response in answers:
        by_key[call.caller, call.key].append((call, response))
    for group in by_key.values():
        ran = [(c, r) for c, r in group if "idempotent-replayed" not in r.headers]
        ran = [(c, r) for c, r in ran if r.status_code == 201]
        assert len(ran) == 1, [(c, r.status_code) for c, r in group]
        winner, first = ran[0]
        for call, response in group:
            if call.amount == winner.amount:
                assert response.status_code == 201
                assert response.content == first.content
            else:
                assert response.status_code == 422, response.text
    assert stored_rows == len(by_key)


@settings(max_examples=40, deadline=None, database=None)
@given(schedule=schedules())
def test_each_key_runs_once_whatever_the_interleaving(schedule: list[list[Call]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(play(schedule, Path(folder)))
