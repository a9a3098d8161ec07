"""What the runtime needs to know about one entity, derived from its table."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, SmallInteger, Table

from .cache.config import CacheConfig
from .idempotency.policy import IdempotencyPolicy

Converter = Callable[[str], Any]

ORDERED_OPS = frozenset({"eq", "ne", "lt", "lte", "gt", "gte", "in", "isnull"})
TEXT_OPS = ORDERED_OPS | {"contains", "icontains", "startswith", "endswith"}
EQUALITY_OPS = frozenset({"eq", "ne", "in", "isnull"})


@dataclass(frozen=True)
class Filterable:
    column: Column[Any]
    python_type: type
    ops: frozenset[str]


@dataclass(frozen=True)
class Link:
    """A many-to-many relation stored in a link table."""

    name: str
    table: Table
    source_column: str
    target_column: str
    target: str  # the target resource's name; resolved by the registry


@dataclass
class Resource:
    name: str
    table: Table
    soft_delete: bool = False
    sortable: Iterable[str] = ()
    searchable: Iterable[str] = ()
    default_sort: tuple[str, ...] = ("created_at",)
    links: dict[str, Link] = field(default_factory=dict)
    cache: CacheConfig | None = None  # None: every read goes to the database
    path: str = ""  # where the routes serve it, e.g. "/products" (for cache hits)
    # Idempotency-Key handling by action (create, update); an action not listed ignores it.
    idempotency: dict[str, IdempotencyPolicy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id_column: Column[Any] = self.table.c.id
        self.deleted_column: Column[Any] | None = (
            self.table.c.deleted_at if self.soft_delete else None
        )
        # The row version If-Match compares (generated tables have it; +1 on every change).
        self.version_column: Column[Any] | None = self.table.c.get("version")
        # Responses carry every column but the soft-delete marker.
        self.read_columns: list[Column[Any]] = [c for c in self.table.c if c.name != "deleted_at"]
        self.sortable = frozenset(self.sortable) | {"id", "created_at", "updated_at"}
        self.search_columns: tuple[Column[Any], ...] = tuple(
            self.table.c[name] for name in self.searchable
        )
        self.filters: dict[str, Filterable] = {}
        for column in self.read_columns:
            python_type = column_python_type(column)
            if python_type is None:
                ops = frozenset({"isnull"})
                python_type = object
            elif python_type is str:
                ops = TEXT_OPS
            elif python_type in (bool, uuid.UUID):
                ops = EQUALITY_OPS
            else:
                ops = ORDERED_OPS
            self.filters[column.name] = Filterable(column, python_type, ops)

    @property
    def id_python_type(self) -> type:
        return self.filters["id"].python_type


def column_python_type(column: Column[Any]) -> type | None:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return None
    if python_type in (dict, list):
        return None
    if issubclass(python_type, float) and python_type is not float:
        return float
    known = (bool, int, Decimal, float, str, dt.datetime, dt.date, uuid.UUID)
    return python_type if python_type in known else None


INT64 = (-(2**63), 2**63 - 1)


def integer_bounds(column_type: Any) -> tuple[int, int] | None:
    """The values an integer column can hold, or None for other types."""
    if isinstance(column_type, BigInteger):
        return INT64
    if isinstance(column_type, SmallInteger):
        return (-(2**15), 2**15 - 1)
    if isinstance(column_type, Integer):
        return (-(2**31), 2**31 - 1)
    return None
