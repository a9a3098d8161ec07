"""Jinja rendering of the plan into source files (formatting is left to ruff)."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from decimal import Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from microforge import __version__

from .plan import ColumnPlan, EntityPlan


def pyrepr(value: Any) -> str:
    """Python source for a value, using the names generated modules import."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, Decimal):
        return f"Decimal({str(value)!r})"
    if isinstance(value, dt.datetime):
        return f"dt.datetime.fromisoformat({value.isoformat()!r})"
    if isinstance(value, dt.date):
        return f"dt.date.fromisoformat({value.isoformat()!r})"
    if isinstance(value, uuid.UUID):
        return f"uuid.UUID({str(value)!r})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{pyrepr(k)}: {pyrepr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(pyrepr(v) for v in value) + "]"
    if isinstance(value, tuple):
        return pytuple(value)
    return repr(value)


def pytuple(values: Any) -> str:
    items = [pyrepr(v) for v in values]
    if len(items) == 1:
        return f"({items[0]},)"
    return "(" + ", ".join(items) + ")"


def constraint_name(prefix: str, table: str, columns: list[str]) -> str:
    """Deterministic names within the 64-character limit of MariaDB (63 on PostgreSQL)."""
    name = f"{prefix}_{table}_{'_'.join(columns)}"
    if len(name) <= 60:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[:51]}_{digest}"


def fk_name(entity: EntityPlan, column: ColumnPlan) -> str:
    return constraint_name("fk", entity.plural, [column.name])


def column_args(entity: EntityPlan, c: ColumnPlan) -> str:
    """The arguments of one sa.Column(...) in tables.py."""
    args = [pyrepr(c.name), c.sa_type]
    if c.foreign_key:
        fk = [pyrepr(c.foreign_key), f"name={pyrepr(fk_name(entity, c))}"]
        args.append(f"sa.ForeignKey({', '.join([*fk, f'ondelete={pyrepr(c.on_delete)}'])})")
    args.append(f"nullable={c.nullable}")
    if c.server_default is not None:
        args.append(f"server_default={c.server_default}")
    if c.comment:
        args.append(f"comment={pyrepr(c.comment)}")
    return ", ".join(args)


def field_annotation(c: ColumnPlan, mode: str) -> str:
    """The annotation and Field(...) of one column in a Create, Update or read model."""
    py_type = c.py_type
    if mode == "read":
        py_type = {"EmailStr": "str", "HttpUrl": "str"}.get(py_type, py_type)
        description = c.description
        if c.read_roles is not None:
            # Left out of responses to callers without one of these roles.
            shown = ", ".join(c.read_roles) or "nobody"
            description = f"{description} Only present for: {shown}.".strip()
            return f"{py_type} | None = Field(None, description={description!r})"
        args = [f"description={description!r}"] if description else []
        field = f" = Field({', '.join(args)})" if args else ""
        return f"{py_type}{field}" if not c.nullable else f"{py_type} | None{field}"
    args = [f"{k}={v}" for k, v in c.constraints.items()]
    if c.description:
        args.append(f"description={c.description!r}")
    if c.example is not None and mode == "create":
        args.append(f"examples=[{pyrepr(c.example)}]")
    if mode == "update":
        return f"{py_type} | None = Field({', '.join(['None', *args])})"
    if c.has_default:
        default = pyrepr(c.default)
        if isinstance(c.default, list):
            return f"{py_type} = Field({', '.join([f'default_factory=lambda: {default}', *args])})"
        return f"{py_type} = Field({', '.join([default, *args])})"
    if not c.required or c.stamped:
        # The owner column: omitted, it is the caller's id (set by the access policy).
        return f"{py_type} | None = Field({', '.join(['None', *args])})"
    return f"{py_type} = Field({', '.join(args)})" if args else py_type


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("microforge.generator", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pyrepr"] = pyrepr
    env.filters["pytuple"] = pytuple
    env.globals.update(
        constraint_name=constraint_name,
        fk_name=fk_name,
        column_args=column_args,
        field_annotation=field_annotation,
        version=__version__,
    )
    return env
