"""A service's caches: one per cached entity, their backends, the invalidation bus.

``Caching`` is built from the service's settings; ``Repositories.build`` asks it for each
entity's repository, and the app's lifespan starts it (bus, warm-up) and closes it
(write-back flush first, while the database is still there).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from ..auth.policy import ALL_ROWS, EntityPolicy, RowScope
from ..auth.principal import ANONYMOUS
from ..problems import Problem
from ..repository import Repository
from ..resource import Resource
from .backends import Backend, open_backend, redis_client
from .bus import InvalidationBus
from .config import CacheConfig
from .entity_cache import EntityCache, LockFactory
from .repository import CachedRepository
from .rwlock import RedisReadWriteLock

log = logging.getLogger("microforge.cache")

KEY_FORMAT = 1  # bump when the key layout or the entry format changes


class Caching:
    def __init__(
        self,
        service: str,
        *,
        redis_url: str = "",
        memcached_url: str = "",
        bus: bool = False,
        enabled: bool = True,
    ) -> None:
        self.service = service
        self.enabled = enabled
        self._urls = {"redis": redis_url, "memcached": memcached_url}
        self._shared: dict[str, Backend] = {}
        self._backends: list[Backend] = []
        self.repositories: dict[str, CachedRepository] = {}
        self.bus: InvalidationBus | None = None
        if bus:
            if not redis_url:
                raise ValueError("the cache bus needs a Redis URL (set <SERVICE>_REDIS_URL)")
            self.bus = InvalidationBus(redis_url, f"mf:{service}:cache")
        self._lock_client: redis.asyncio.Redis | None = None

    # Building --------------------------------------------------------------------------

    def repository(self, engine: AsyncEngine, resource: Resource) -> Repository:
        config: CacheConfig | None = resource.cache
        if config is None or not self.enabled:
            return Repository(engine, resource)
        cache = EntityCache(
            resource.name, self._prefix(resource), config, self._backend(resource.name, config)
        )
        if self.bus is not None:
            cache.publish = self.bus.publish
        if config.lock:
            cache.lock = self._lock(config)
        repo = CachedRepository(engine, resource, cache)
        self.repositories[resource.name] = repo
        return repo

    def link(self, repos: Mapping[str, Repository]) -> None:
        """Tell each cached repository whose caches its deletes can change."""
        by_table = {repo.resource.table.name: name for name, repo in repos.items()}
        for name, repo in repos.items():
            if not isinstance(repo, CachedRepository):
                continue
            dependents = []
            for other in self.repositories.values():
                for fk in other.resource.table.foreign_keys:
                    if (
                        by_table.get(fk.column.table.name) == name
                        and (fk.ondelete or "").upper() in ("CASCADE", "SET NULL")
                        and other.cache not in dependents
                    ):
                        dependents.append(other.cache)
            repo.dependents = tuple(dependents)

    def _prefix(self, resource: Resource) -> str:
        # Entries of an older table layout are never read as the new one's.
        layout = ";".join(f"{c.name}:{c.type!r}" for c in resource.table.c)
        version = hashlib.blake2b(f"{KEY_FORMAT}|{layout}".encode(), digest_size=4).hexdigest()
        return f"mf:{self.service}:{version}:{resource.name}"

    def _backend(self, entity: str, config: CacheConfig) -> Backend:
        if config.backend == "memory":
            backend = open_backend("memory://", policy=config.eviction, capacity=config.max_entries)
            self._backends.append(backend)
            return backend
        shared = self._shared.get(config.backend)
        if shared is None:
            url = self._urls.get(config.backend, "")
            if not url:
                variable = f"{self.service.upper()}_{config.backend.upper()}_URL"
                raise ValueError(
                    f"{entity} caches in {config.backend} (spec cache.backend) but {variable} "
                    "is not set"
                )
            shared = open_backend(url)
            self._shared[config.backend] = shared
            self._backends.append(shared)
        return shared

    def _lock(self, config: CacheConfig) -> LockFactory:
        # The same client settings as the Redis backend (a `?timeout=` in the URL included).
        if self._lock_client is None:
            self._lock_client, _ = redis_client(self._urls["redis"])
        client = self._lock_client
        return lambda key: RedisReadWriteLock(client, f"{key}:lock")

    # Running ---------------------------------------------------------------------------

    async def start(self, policies: Mapping[str, EntityPolicy] | None = None) -> None:
        if self.bus is not None:
            await self.bus.start(self._received)
        await self.warm(policies or {})

    async def warm(self, policies: Mapping[str, EntityPolicy]) -> None:
        for name, repo in self.repositories.items():
            if not repo.config.warm:
                continue
            try:
                await repo.warm(repo.config.warm, _warm_scopes(policies.get(name)))
            except Exception:  # a cold cache is slower, not broken: keep starting
                log.exception("warm-up of %s failed", name)

    async def _received(self, message: dict[str, Any]) -> None:
        if message.get("op") == "resync":  # messages may have been lost: drop everything
            targets = list(self.repositories.values())
        else:
            target = self.repositories.get(str(message.get("entity")))
            targets = [] if target is None else [target]
        for repo in targets:
            await repo.cache.received(message)

    async def aclose(self) -> None:
        for repo in self.repositories.values():
            try:
                await repo.aclose()
            except Exception:
                log.exception("closing the %s cache failed", repo.resource.name)
        if self.bus is not None:
            await self.bus.aclose()
        if self._lock_client is not None:
            await self._lock_client.aclose()
        await asyncio.gather(*(b.aclose() for b in self._backends), return_exceptions=True)

    # Administration ----------------------------------------------------------------------

    def cached(self, entity: str) -> CachedRepository:
        repo = self.repositories.get(entity)
        if repo is None:
            raise Problem(404, f"{entity} is not cached.", title="Not cached")
        return repo

    def stats(self) -> dict[str, dict[str, Any]]:
        snapshot = {}
        for name, repo in self.repositories.items():
            values = repo.cache.stats.as_dict()
            values["store"] = repo.cache.backend.stats()
            values["backend"] = repo.cache.backend.kind
            values["strategy"] = repo.config.strategy
            if repo.write_behind is not None:
                values["write_back_pending"] = len(repo.write_behind.pending)
            snapshot[name] = values
        return snapshot


def _warm_scopes(policy: EntityPolicy | None) -> Sequence[RowScope]:
    """Warm what most readers ask for: every row (staff, admins), and what an anonymous
    caller sees if the list is public."""
    scopes = [ALL_ROWS]
    if policy is not None:
        try:
            anonymous = policy.authorize(ANONYMOUS, "list")
        except Problem:
            return scopes
        if not anonymous.unrestricted and not anonymous.empty:
            scopes.append(anonymous)
    return scopes
