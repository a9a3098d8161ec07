"""How one entity is cached: the spec's `cache` section as the runtime reads it."""

from __future__ import annotations

from dataclasses import dataclass

STRATEGIES = ("cache-aside", "read-through", "write-through", "write-back", "write-around")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    strategy: str = "cache-aside"
    ttl: float = 300.0
    max_entries: int = 10_000
    eviction: str = "tinylfu"
    backend: str = "memory"  # memory | redis | memcached
    lists: bool = True
    early_refresh: float = 1.0  # XFetch beta; 0 turns early refresh off
    lock: bool = False  # Redis read-write lock around loads and writes
    write_back_delay: float = 1.0
    write_back_max_pending: int = 1000
    warm: tuple[str, ...] = ()  # list query strings loaded at start
    max_age: int = 0  # HTTP Cache-Control
    stale_while_revalidate: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown cache strategy {self.strategy!r}")
        if self.ttl <= 0:
            raise ValueError("ttl must be positive")
