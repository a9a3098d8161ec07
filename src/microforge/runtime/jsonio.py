"""JSON encoding straight from database rows (orjson), skipping Pydantic on the read path."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    # Decimals travel as strings so no precision is lost (as Pydantic does in JSON mode).
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        # asyncpg returns its own UUID subclass, which orjson does not take natively.
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=_OPTIONS)


class JSONBytes(Response):
    """A JSON response whose body is encoded by orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)
