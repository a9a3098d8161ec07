"""Rules for the `cache` section of entities."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from .errors import Path, suggest
from .model import Entity, Spec, column_name

Err = Callable[..., None]
# Keys of a list query besides field filters; a warm-up query has no cursor to resume.
_WARM_PARAMETERS = ("sort", "limit", "offset", "q")
_AUTOMATIC_COLUMNS = ("id", "created_at", "updated_at")


def validate_cache(spec: Spec, err: Err) -> None:
    for service_name, service in spec.services.items():
        for entity_name, entity in service.entities.items():
            cache = entity.cache
            if cache is None:
                continue
            cpath: Path = ("services", service_name, "entities", entity_name, "cache")
            auth = spec.auth
            if auth and (service_name, entity_name) == (auth.service, auth.user_entity):
                err(
                    cpath,
                    "the user entity cannot be cached: the identity endpoints (roles, "
                    "disabling, password changes) change users outside the repository",
                    key=True,
                )
            if "write_back" in cache.model_fields_set and cache.strategy != "write-back":
                err(
                    (*cpath, "write_back"),
                    f"write_back settings need strategy: write-back (this entity uses "
                    f"{cache.strategy})",
                    key=True,
                )
            if cache.lock and cache.backend != "redis":
                err(
                    (*cpath, "lock"),
                    f"lock: true needs backend: redis (the lock lives in Redis; this entity "
                    f"uses {cache.backend})",
                )
            if cache.warm and not cache.lists:
                err((*cpath, "warm"), "warm-up loads list queries: it needs lists: true", key=True)
            for index, query in enumerate(cache.warm):
                problem = _warm_problem(query, entity)
                if problem is not None:
                    err((*cpath, "warm", index), problem)


def _warm_problem(query: str, entity: Entity) -> str | None:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return f"'{query}' is not a query string: expected e.g. status=active&sort=-created_at"
    columns = [*_AUTOMATIC_COLUMNS]
    columns += [c for name, field in entity.fields.items() if (c := column_name(name, field))]
    for key, value in pairs:
        if key in _WARM_PARAMETERS:
            if key == "sort":
                for part in value.split(","):
                    name = part.removeprefix("-")
                    if name not in columns:
                        return f"cannot sort by unknown field '{name}'{suggest(name, columns)}"
            continue
        name = key.partition("__")[0]
        if name not in columns:
            accepted = [*columns, *_WARM_PARAMETERS]
            hint = suggest(name, accepted) or f" (expected one of: {', '.join(accepted)})"
            return f"unknown query parameter '{key}'{hint}"
    return None
