"""Rules for the `idempotency` section of entities."""

from __future__ import annotations

from collections.abc import Callable

from .errors import Path
from .model import Spec

Err = Callable[..., None]


def validate_idempotency(spec: Spec, err: Err) -> None:
    for service_name, service in spec.services.items():
        for entity_name, entity in service.entities.items():
            idem = entity.idempotency
            ipath: Path = ("services", service_name, "entities", entity_name, "idempotency")
            cache = entity.cache
            if idem.update != "off" and cache is not None and cache.strategy == "write-back":
                # The stored 200 would outlive a change still waiting in the cache.
                err(
                    (*ipath, "update"),
                    "write-back acknowledges a PATCH before it reaches the database, so a "
                    "stored response could outlive a lost change: use update: off or another "
                    "cache strategy",
                )
            if idem.lease >= idem.retention:
                # Point at what the spec wrote: the lease, or a retention below its default.
                named = "lease" if "lease" in idem.model_fields_set else "retention"
                err(
                    (*ipath, named),
                    f"the lease ({idem.lease:g} s) must be shorter than the retention "
                    f"({idem.retention} s): a key expires while its request still holds it",
                )
            if len(set(idem.outcomes)) != len(idem.outcomes):
                err((*ipath, "outcomes"), "each outcome may be listed once")
            elif "success" not in idem.outcomes:
                err(
                    (*ipath, "outcomes"),
                    "outcomes must include success: a retried request that succeeded would "
                    "otherwise run again",
                )
