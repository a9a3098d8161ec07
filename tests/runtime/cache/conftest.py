"""Fixtures shared by the cache tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from microforge.runtime.cache.backends import redis_client


@pytest.fixture
async def redis_connection(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client of the test Redis, for looking behind the runtime's back."""
    client, _ = redis_client(redis_url)
    try:
        yield client
    finally:
        await client.aclose()
