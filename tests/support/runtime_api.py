"""Client-side helpers for the runtime contract tests (see ``runtime_service``)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import httpx

PROBLEM_JSON = "application/problem+json"
T = TypeVar("T")


async def gather_limited(awaitables: Iterable[Awaitable[T]], limit: int = 5) -> list[T]:
    """Await all, at most ``limit`` at a time (the engines' pools hold 5 connections)."""
    semaphore = asyncio.Semaphore(limit)

    async def one(awaitable: Awaitable[T]) -> T:
        async with semaphore:
            return await awaitable

    return await asyncio.gather(*(one(a) for a in awaitables))


async def create(client: httpx.AsyncClient, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """POST ``body`` and return the created row (asserting 201)."""
    response = await client.post(path, json=dict(body))
    assert response.status_code == 201, (path, body, response.text)
    row: dict[str, Any] = response.json()
    return row


async def list_all(
    client: httpx.AsyncClient, path: str, params: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One GET of a collection (asserting 200); the whole page body."""
    response = await client.get(path, params=dict(params or {}))
    assert response.status_code == 200, (path, params, response.text)
    page: dict[str, Any] = response.json()
    return page


def assert_problem(
    response: httpx.Response, status: int, parameter: str | None = None
) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with ``status`` (naming ``parameter`` if given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    for member in ("title", "detail"):
        assert isinstance(body[member], str), body
        assert body[member], body
    if parameter is not None:
        assert body.get("parameter") == parameter, body
    return body


def sort_rows(
    rows: Iterable[Mapping[str, Any]], keys: Sequence[tuple[str, bool]]
) -> list[Mapping[str, Any]]:
    """``rows`` in the runtime's documented order for ``keys`` ((name, descending) pairs).

    Nulls come last in both directions; ``id`` breaks ties in the direction of the last
    key unless ``keys`` already names it.
    """
    full = list(keys)
    if "id" not in {name for name, _ in full}:
        full.append(("id", full[-1][1] if full else False))

    def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
        for name, descending in full:
            x, y = a[name], b[name]
            if x is None or y is None:
                if x is None and y is None:
                    continue
                return 1 if x is None else -1
            if x != y:
                result = -1 if x < y else 1
                return -result if descending else result
        return 0

    return sorted(rows, key=functools.cmp_to_key(compare))


def sort_param(keys: Sequence[tuple[str, bool]]) -> str:
    return ",".join(("-" if descending else "") + name for name, descending in keys)


def ids(rows: Iterable[Mapping[str, Any]], key: Callable[[Any], Any] = str) -> list[Any]:
    return [key(row["id"]) for row in rows]
