"""JSON encoding straight from database rows (orjson), skipping Pydantic on the read path."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
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


def _digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=12).hexdigest()


def make_etag(body: bytes) -> str:
    """A strong validator of a response body: equal bytes, equal tag (list pages)."""
    return f'"{_digest(body)}"'


def row_etag(row: Mapping[str, Any], body: bytes) -> str:
    """The ETag of one row's body: ``"v<version>-<hash>"``.

    The version is what If-Match compares, in the UPDATE itself
    (runtime.preconditions); the hash keeps apart the bodies of one version that show
    different fields to different callers. A row without a version gets a body hash.
    """
    return _tag(row.get("version"), body)


def _tag(version: Any, body: bytes) -> str:
    return make_etag(body) if version is None else f'"v{version}-{_digest(body)}"'


class Payload:
    """A JSON body on its way out: the bytes, their ETag, and the data decoded on demand.

    Cached responses arrive as bytes; most of them leave unchanged, so decoding them
    into a dict (to check a row scope or hide a field) happens only when asked for.
    """

    __slots__ = ("_data", "_etag", "_version", "body")

    def __init__(
        self, body: bytes, etag: str | None = None, data: Any = None, version: Any = None
    ) -> None:
        self.body = body
        self._etag = etag
        self._data = data
        self._version = version  # a row's: its ETag names it

    @classmethod
    def of(cls, data: Any) -> Payload:
        """Any JSON value, tagged by a hash of its body (a list page)."""
        return cls(dumps(data), data=data)

    @classmethod
    def row(cls, row: Mapping[str, Any]) -> Payload:
        """One row, tagged with its version (:func:`row_etag`) when its tag is asked for:
        a row redacted for its caller is tagged only in the form it leaves in."""
        return cls(dumps(row), data=row, version=row.get("version"))

    @property
    def etag(self) -> str:
        if self._etag is None:
            self._etag = _tag(self._version, self.body)
        return self._etag

    def data(self) -> Any:
        """The decoded value. Treat it as read-only: it may be shared with the cache."""
        if self._data is None:
            self._data = orjson.loads(self.body)
        return self._data
