"""Column and value types shared by generated tables and schemas."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import AfterValidator, AnyHttpUrl, TypeAdapter
from sqlalchemy import DateTime, LargeBinary
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

_URL = TypeAdapter(AnyHttpUrl)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite and MariaDB store them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[dt.datetime]:
        return dt.datetime

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        # MySQL/MariaDB's plain DATETIME keeps whole seconds: values did not round-trip
        # and keyset cursors compared truncated values. Keep microseconds everywhere.
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(self.impl_instance)

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - SQLite returns datetimes already
            value = dt.datetime.fromisoformat(value)
        moment: dt.datetime = value
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


class Blob(TypeDecorator[bytes]):
    """Binary data of any size: MariaDB's plain BLOB stops at 64 KiB."""

    impl = LargeBinary()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.LONGBLOB())
        return dialect.type_descriptor(self.impl_instance)


def _check_url(value: str) -> str:
    return str(_URL.validate_python(value))


HttpUrl = Annotated[str, AfterValidator(_check_url)]
"""An http(s) URL, validated and normalised, kept as a plain string."""


def reject_null(value: object) -> object:
    """PATCH may omit a required field but may not set it to null."""
    if value is None:
        raise ValueError("may not be null")
    return value


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
