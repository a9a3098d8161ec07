"""Small HTTP helpers generated routes use."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from .query import MAX_LIMIT
from .resource import Resource

_OP_HELP = {
    "eq": "equals",
    "ne": "differs",
    "lt": "less than",
    "lte": "at most",
    "gt": "greater than",
    "gte": "at least",
    "in": "one of (comma separated)",
    "contains": "contains (case-sensitive)",
    "icontains": "contains (case-insensitive)",
    "startswith": "starts with",
    "endswith": "ends with",
    "isnull": "is null (true/false)",
}
_JSON_TYPES = {int: "integer", float: "number", bool: "boolean"}


def location(request: Request, path: str) -> str:
    """A Location header value that stays right behind the gateway's /{service} prefix."""
    prefix = request.headers.get("x-forwarded-prefix", "").rstrip("/")
    if not prefix.startswith("/") or "//" in prefix:
        prefix = ""
    return f"{prefix}{path}"


def list_parameters(resource: Resource) -> list[dict[str, Any]]:
    """OpenAPI descriptions of the filter parameters a list endpoint accepts."""
    params: list[dict[str, Any]] = [
        {
            "name": "sort",
            "in": "query",
            "required": False,
            "description": "Comma-separated fields, '-' for descending: "
            + ", ".join(sorted(str(s) for s in resource.sortable)),
            "schema": {"type": "string"},
            "example": "-created_at",
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50},
        },
        {
            "name": "offset",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 0, "default": 0},
        },
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "description": "next_cursor of the previous page (keyset pagination).",
            "schema": {"type": "string"},
        },
    ]
    if resource.search_columns:
        names = ", ".join(c.name for c in resource.search_columns)
        params.append(
            {
                "name": "q",
                "in": "query",
                "required": False,
                "description": f"Case-insensitive search in: {names}.",
                "schema": {"type": "string"},
            }
        )
    for name, target in resource.filters.items():
        ops = ", ".join(f"`{name}__{op}` ({_OP_HELP[op]})" for op in sorted(target.ops))
        params.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": f"Filter: equals. Also {ops}.",
                "schema": {"type": _JSON_TYPES.get(target.python_type, "string")},
            }
        )
    return params
