"""How each spec field type maps to Python, Pydantic and SQLAlchemy.

One table per concern keeps the three views of a field consistent.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, EmailStr, Field

from microforge.spec.model import (
    DecimalField,
    EnumField,
    EnumListField,
    FieldSpec,
    FloatField,
    IntegerField,
    ReferenceField,
    RelationField,
    StringField,
    TextField,
)

INT_BOUNDS = {"integer": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}

_SIMPLE: dict[str, Any] = {
    "text": str,
    "email": EmailStr,
    "url": AnyHttpUrl,
    "float": float,
    "boolean": bool,
    "date": dt.date,
    "datetime": dt.datetime,
    "uuid": uuid.UUID,
    "json": Any,
}


def python_input_type(field: FieldSpec) -> Any:
    """A runtime type for validating spec defaults and seed values of a scalar field."""
    if isinstance(field, StringField):
        return Annotated[
            str,
            Field(max_length=field.max_length, min_length=field.min_length, pattern=field.pattern),
        ]
    if isinstance(field, TextField):
        return Annotated[str, Field(max_length=field.max_length)]
    if isinstance(field, IntegerField):
        low, high = INT_BOUNDS[field.type]
        return Annotated[
            int,
            Field(
                ge=field.min if field.min is not None else low,
                le=field.max if field.max is not None else high,
                strict=True,
            ),
        ]
    if isinstance(field, DecimalField):
        return Annotated[
            Decimal,
            Field(
                ge=field.min,
                le=field.max,
                max_digits=field.precision,
                decimal_places=field.scale,
                allow_inf_nan=False,
            ),
        ]
    if isinstance(field, FloatField):
        return Annotated[float, Field(ge=field.min, le=field.max, allow_inf_nan=False)]
    if isinstance(field, EnumField):
        return Literal[tuple(field.values)] if field.values else str
    if isinstance(field, EnumListField):
        return list[Literal[tuple(field.values)]] if field.values else list[str]  # type: ignore[misc]
    if isinstance(field, (RelationField, ReferenceField)):
        return Any
    return _SIMPLE[field.type]
