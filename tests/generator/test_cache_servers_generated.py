"""A generated service whose entities cache in Redis (with the read-write lock) and in
Memcached, and keep Idempotency-Keys in Redis: its settings insist on the servers' URLs,
and its own tests pass against the real servers."""

from __future__ import annotations

import textwrap
from pathlib import Path

from support.project import generate, python

SPEC = """\
name: cached
services:
  stock:
    entities:
      Shelf:
        fields: {label: {type: string, max_length: 40, searchable: true}}
        cache: {strategy: write-through, backend: redis, lock: true, http: {max_age: 30}}
        idempotency: {create: required, store: redis}
      Bin:
        fields:
          code: {type: string, max_length: 12}
          shelf: {type: relation, to: Shelf, on_delete: cascade}
        cache: {strategy: write-back, backend: memcached, write_back: {delay: 0.2}}
"""


def test_a_service_caching_in_redis_and_memcached(
    tmp_path: Path, redis_url: str, memcached_url: str
) -> None:
    spec = tmp_path / "cached.yaml"
    spec.write_text(textwrap.dedent(SPEC))
    generate(spec, tmp_path / "out")
    service = tmp_path / "out" / "services" / "stock"

    missing = python(
        ["-c", "from stock_service.generated.settings import Settings; Settings()"], service
    )
    assert missing.returncode != 0
    assert "STOCK_REDIS_URL is not set" in missing.stderr
    assert "caches entities in Redis and keeps idempotency keys in Redis" in missing.stderr
    assert "STOCK_MEMCACHED_URL is not set" in missing.stderr

    env = {"STOCK_REDIS_URL": redis_url, "STOCK_MEMCACHED_URL": memcached_url}
    # What uvicorn imports: a bad variable stops it with a message, not a traceback.
    bad = python(["-c", "import stock_service.main"], service, {**env, "STOCK_POOL_SIZE": "many"})
    assert bad.returncode == 1
    assert "STOCK_POOL_SIZE: Input should be a valid integer" in bad.stderr
    assert "Traceback" not in bad.stderr
    tests = python(["-m", "pytest", "-q", "-p", "no:cacheprovider"], service, env)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout
