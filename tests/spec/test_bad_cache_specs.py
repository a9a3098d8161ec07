"""Bad `cache` sections: each problem names the file, line, path and what was expected.

Same layout as test_bad_specs.py, whose helpers this reuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from microforge.spec import load_spec_text

from .test_bad_specs import Case, case, check_case

P = "services.catalog.entities.Product.cache"

HEAD = """
name: shop
services:
  catalog:
    entities:
      Product:
        fields: {name: string, status: {type: enum, values: [draft, active]}}
"""


def cache_case(id: str, cache: str, path: str, *words: str, count: int = 1) -> Case:
    return case(id, HEAD + "        cache:\n" + cache, path, *words, count=count)


CASES = [
    cache_case(
        "unknown-strategy",
        "          strategy: write-behind #<\n",
        f"{P}.strategy",
        "cache-aside",
        "write-back",
    ),
    cache_case(
        "unknown-eviction",
        "          eviction: arc #<\n",
        f"{P}.eviction",
        "tinylfu",
    ),
    cache_case(
        "unknown-backend",
        "          backend: hazelcast #<\n",
        f"{P}.backend",
        "memcached",
    ),
    cache_case("ttl-zero", "          ttl: 0 #<\n", f"{P}.ttl", "greater than or equal to 1"),
    cache_case(
        "misspelt-option-with-did-you-mean",
        "          tll: 30 #<\n",
        f"{P}.tll",
        "unknown key 'tll'",
        "did you mean 'ttl'",
    ),
    cache_case(
        "misspelt-http-option",
        "          http: {max_agee: 30} #<\n",
        f"{P}.http.max_agee",
        "did you mean 'max_age'",
    ),
    cache_case(
        "write-back-settings-without-write-back",
        "          strategy: write-through\n          write_back: {delay: 2} #<\n",
        f"{P}.write_back",
        "strategy: write-back",
        "write-through",
    ),
    cache_case(
        "lock-without-redis",
        "          lock: true #<\n",
        f"{P}.lock",
        "backend: redis",
    ),
    cache_case(
        "warm-without-lists",
        "          lists: false\n          warm: [status=active] #<\n",
        f"{P}.warm",
        "lists: true",
    ),
    cache_case(
        "warm-unknown-field-with-did-you-mean",
        "          warm: [stauts=active] #<\n",
        f"{P}.warm[0]",
        "unknown query parameter 'stauts'",
        "did you mean 'status'",
    ),
    cache_case(
        "warm-unknown-sort-field",
        "          warm: [sort=-price] #<\n",
        f"{P}.warm[0]",
        "cannot sort by unknown field 'price'",
    ),
    cache_case(
        "warm-not-a-query-string",
        "          warm: ['a=%zz&&'] #<\n",
        f"{P}.warm[0]",
        "not a query string",
    ),
    case(
        "cached-user-entity",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User:
                fields: {email: {type: email, unique: true}}
                cache: true #<
        """,
        "services.identity.entities.User.cache",
        "user entity cannot be cached",
    ),
]


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_bad_cache_spec(tmp_path: Path, c: Case) -> None:
    check_case(tmp_path, c)


def test_cache_true_is_every_default_and_false_is_none() -> None:
    on = load_spec_text(HEAD + "        cache: true\n", "on.yaml")
    off = load_spec_text(HEAD + "        cache: false\n", "off.yaml")
    cache = on.services["catalog"].entities["Product"].cache
    assert cache is not None
    assert (cache.strategy, cache.eviction, cache.backend, cache.ttl) == (
        "cache-aside",
        "tinylfu",
        "memory",
        300,
    )
    assert off.services["catalog"].entities["Product"].cache is None
