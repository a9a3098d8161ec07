"""What each entity's cache did: counters for the admin endpoint and for Prometheus."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass
class CacheStats:
    hits: int = 0
    served_early: int = 0  # hits answered before routing (runtime.cache.hits)
    misses: int = 0
    loads: int = 0
    load_seconds: float = 0.0
    coalesced: int = 0  # misses that joined a load already running (single flight)
    early_refreshes: int = 0  # XFetch reloads before expiry
    invalidations: int = 0  # items dropped, list generations bumped, clears
    remote_invalidations: int = 0  # received from other instances
    stale_fills_skipped: int = 0  # loads not stored: a write happened meanwhile
    errors: int = 0  # cache server unreachable; the database answered instead
    warmed: int = 0  # entries loaded by warm-up
    write_back_flushed: int = 0
    write_back_failed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# (name, help, kind) of what the collector exports, in the order above.
_COUNTERS = (
    ("hits", "Reads answered from the cache"),
    ("served_early", "Cache hits answered before routing"),
    ("misses", "Reads the cache could not answer"),
    ("loads", "Loads from the database after a miss or for an early refresh"),
    ("load_seconds", "Time spent loading from the database"),
    ("coalesced", "Misses that waited for a load already running"),
    ("early_refreshes", "Entries reloaded before they expired (XFetch)"),
    ("invalidations", "Entries or list generations invalidated by writes or by hand"),
    ("remote_invalidations", "Invalidations received from other instances"),
    ("stale_fills_skipped", "Loads not stored because a write happened meanwhile"),
    ("errors", "Cache server errors answered from the database instead"),
    ("write_back_flushed", "Write-back changes written to the database"),
    ("write_back_failed", "Write-back changes the database refused"),
)
_BACKEND_COUNTERS = ("evictions", "rejections", "expirations")
_BACKEND_GAUGES = ("size", "capacity")


class CacheCollector(Collector):
    """Exports every entity's counters as ``microforge_cache_*{service, entity}``."""

    def __init__(
        self,
        service: str,
        stats: Callable[[], Mapping[str, Mapping[str, Any]]],
    ) -> None:
        self._service = service
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        snapshot = self._stats()
        labels = ["service", "entity"]
        for name, help_text in _COUNTERS:
            family = CounterMetricFamily(f"microforge_cache_{name}", help_text, labels=labels)
            for entity, values in snapshot.items():
                family.add_metric([self._service, entity], float(values[name]))
            yield family
        for name in _BACKEND_COUNTERS:
            family = CounterMetricFamily(
                f"microforge_cache_{name}", f"In-process store {name}", labels=labels
            )
            for entity, values in snapshot.items():
                if name in values.get("store", {}):
                    family.add_metric([self._service, entity], float(values["store"][name]))
            yield family
        for name in (*_BACKEND_GAUGES, "write_back_pending"):
            gauge = GaugeMetricFamily(
                f"microforge_cache_{name}", f"Cache {name.replace('_', ' ')}", labels=labels
            )
            for entity, values in snapshot.items():
                value = values.get("store", {}).get(name, values.get(name))
                if value is not None:
                    gauge.add_metric([self._service, entity], float(value))
            yield gauge
