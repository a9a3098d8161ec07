"""List queries: filters (`field__op=value`), sorting, offset and keyset pagination.

Every value is parsed against the column's type before it reaches SQL, and every bad
parameter is reported as a 400 naming it; values are always bound, never interpolated.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import difflib
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    ColumnElement,
    LargeBinary,
    Numeric,
    and_,
    cast,
    false,
    literal,
    or_,
    true,
    type_coerce,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from .problems import Problem
from .resource import INT64, Filterable, Resource, integer_bounds

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_DECIMAL_DIGITS = 65  # before the point, for a NUMERIC without precision (MySQL's limit)
MAX_DECIMAL_PLACES = 30  # after it (MySQL's limit)
RESERVED = {"sort", "limit", "offset", "cursor", "q"}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class SortKey:
    name: str
    descending: bool
    nullable: bool


@dataclass
class ListQuery:
    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    after: list[Any] | None = None  # sort values of the last row of the previous page


def bad_query(detail: str, parameter: str) -> Problem:
    return Problem(
        400,
        detail,
        title="Malformed query",
        type="urn:microforge:problem:query",
        parameter=parameter,
    )


def parse_value(raw: str, python_type: type, parameter: str) -> Any:
    if "\x00" in raw:
        raise bad_query("Values may not contain NUL characters.", parameter)
    try:
        if python_type is str:
            return raw
        if python_type is bool:
            lowered = raw.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError("expected true or false")
        if python_type is int:
            number = int(raw)
            if not INT64[0] <= number <= INT64[1]:
                raise ValueError("out of range")
            return number
        if python_type is Decimal:
            decimal = Decimal(raw)
            if not decimal.is_finite():
                raise ValueError("expected a finite number")
            return decimal
        if python_type is float:
            number_f = float(raw)
            if not math.isfinite(number_f):
                raise ValueError("expected a finite number")
            return number_f
        if python_type is dt.datetime:
            moment = dt.datetime.fromisoformat(raw)
            # Normalise here: a moment near year 1 or 9999 with an offset cannot be
            # expressed in UTC, and failing later in the bind answered 500.
            moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
            return moment.astimezone(dt.UTC)
        if python_type is dt.date:
            return dt.date.fromisoformat(raw)
        if python_type is uuid.UUID:
            return uuid.UUID(raw)
    except (ValueError, InvalidOperation, OverflowError) as exc:
        kind = python_type.__name__.lower()
        raise bad_query(
            f"'{parameter}': {raw!r} is not a valid {kind} ({exc}).", parameter
        ) from None
    raise bad_query(f"'{parameter}' cannot be compared.", parameter)


def _column_value(target: Filterable, raw: str, parameter: str) -> Any:
    """``raw`` parsed for the column, also within the range the column can hold."""
    value = parse_value(raw, target.python_type, parameter)
    bounds = integer_bounds(target.column.type)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        # PostgreSQL refuses to compare an int4 column with a larger parameter, which
        # surfaced as 500 before; no row can match anyway, so the value is simply wrong.
        raise bad_query(
            f"'{parameter}': {raw!r} is out of range ({bounds[0]} to {bounds[1]}).", parameter
        )
    if isinstance(value, Decimal):
        _check_decimal(value, target.column.type, raw, parameter)
    return value


def _check_decimal(value: Decimal, column_type: Any, raw: str, parameter: str) -> None:
    # Like integers: PostgreSQL failed on values beyond NUMERIC(p, s) (answering 422, or
    # for `1E+1000000000` MariaDB's driver wrote a billion digits and lost the connection).
    precision: int | None = getattr(column_type, "precision", None)
    scale: int = getattr(column_type, "scale", None) or 0
    digits = precision - scale if precision is not None else MAX_DECIMAL_DIGITS
    if value.copy_abs() >= Decimal(1).scaleb(digits):  # copy_abs: no context, no Overflow
        largest = Decimal(1).scaleb(digits) - Decimal(1).scaleb(-scale)
        raise bad_query(
            f"'{parameter}': {raw!r} is out of range (-{largest} to {largest}).", parameter
        )
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:
        raise bad_query(
            f"'{parameter}': {raw!r} has more than {MAX_DECIMAL_PLACES} decimal places.",
            parameter,
        )


def _bindable(value: Any) -> Any:
    """``value`` ready to compare with its column.

    A decimal is bound as plain NUMERIC: with the column's type, asyncpg sends it as
    `$1::NUMERIC(10, 2)`, which rounds it, so `price=12.301` matched 12.30.
    """
    if isinstance(value, Decimal):
        return literal(value, Numeric())
    return value


class _OnMySQL(FunctionElement[bool]):
    """Renders its first condition, or on MySQL/MariaDB its second one."""

    type = Boolean()
    inherit_cache = True
    name = "on_mysql"
    # A predicate, not a boolean value: without this, databases lacking a boolean type
    # got `(name = ?) = 1`, which keeps them from using an index on the column.
    _is_implicitly_boolean = True


@compiles(_OnMySQL)
def _render_default(element: _OnMySQL, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses.clauses[0], **kw)})"


@compiles(_OnMySQL, "mysql")
@compiles(_OnMySQL, "mariadb")
def _render_mysql(element: _OnMySQL, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses.clauses[1], **kw)})"


def _exact_text(
    column: ColumnElement[Any],
    condition: Callable[[ColumnElement[Any]], ColumnElement[bool]],
    *,
    use_index: bool,
) -> ColumnElement[bool]:
    """``condition`` on a string column, comparing exactly on every database.

    MariaDB's usual collations (utf8mb4_unicode_ci, ..._general_ci) ignore case, accents
    and trailing spaces, so `name=alpha` also found 'Alpha' and `contains` (documented
    case-sensitive) was not. There the column is compared as bytes; with ``use_index``
    the collation test stays in front so an index on the column still narrows the rows.
    """
    plain = condition(column)
    binary = condition(type_coerce(cast(column, LargeBinary), column.type))
    return _OnMySQL(plain, and_(plain, binary) if use_index else binary)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _condition(target: Filterable, op: str, raw: str, parameter: str) -> ColumnElement[bool]:
    column = target.column
    if op == "isnull":
        flag = parse_value(raw, bool, parameter)
        return column.is_(None) if flag else column.is_not(None)
    text_column = target.python_type is str
    if op == "in":
        parts = raw.split(",")
        if len(parts) > MAX_LIMIT:
            raise bad_query(f"'{parameter}' lists more than {MAX_LIMIT} values.", parameter)
        values = [_column_value(target, part, parameter) for part in parts]
        if text_column:
            return _exact_text(column, lambda c: c.in_(values), use_index=True)
        return column.in_([_bindable(v) for v in values])
    if op in {"contains", "icontains", "startswith", "endswith"}:
        text = _like_escape(parse_value(raw, str, parameter))
        pattern = {
            "contains": f"%{text}%",
            "icontains": f"%{text}%",
            "startswith": f"{text}%",
            "endswith": f"%{text}",
        }[op]
        if op == "icontains":
            return column.ilike(pattern, escape="\\")
        return _exact_text(
            column, lambda c: c.like(pattern, escape="\\"), use_index=op == "startswith"
        )
    value = _bindable(_column_value(target, raw, parameter))
    # Build only the requested comparison: SQLAlchemy refuses `<` and friends with
    # True/False, so building them all eagerly made `active=true` answer 500.
    if op == "eq":
        if text_column:
            return _exact_text(column, lambda c: c == value, use_index=True)
        equal: ColumnElement[bool] = column == value
        return equal
    if op == "ne":
        different: ColumnElement[bool] = column != value
        if text_column:
            different = _exact_text(column, lambda c: c != value, use_index=False)
        return or_(different, column.is_(None)) if column.nullable else different
    comparisons: dict[str, Callable[[Any], ColumnElement[bool]]] = {
        "lt": column.__lt__,
        "lte": column.__le__,
        "gt": column.__gt__,
        "gte": column.__ge__,
    }
    return comparisons[op](value)


def _int_param(raw: str, name: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise bad_query(f"'{name}' must be a whole number.", name) from None
    if not low <= value <= high:
        raise bad_query(f"'{name}' must be between {low} and {high}.", name)
    return value


def parse_sort(raw: str | None, resource: Resource) -> list[SortKey]:
    names = [part.strip() for part in raw.split(",")] if raw else list(resource.default_sort)
    keys: list[SortKey] = []
    seen: set[str] = set()
    for item in names:
        descending = item.startswith("-")
        name = item.lstrip("-+")
        if name not in resource.sortable:
            allowed = ", ".join(sorted(resource.sortable))
            raise bad_query(f"Cannot sort by '{name}'; sortable fields: {allowed}.", "sort")
        if name in seen:
            raise bad_query(f"'{name}' appears twice in sort.", "sort")
        seen.add(name)
        keys.append(SortKey(name, descending, bool(resource.table.c[name].nullable)))
    if "id" not in seen:
        keys.append(SortKey("id", keys[-1].descending if keys else False, False))
    return keys


def parse_list_query(params: Mapping[str, str], resource: Resource) -> ListQuery:
    query = ListQuery()
    for key, raw in params.items():
        if key in RESERVED:
            continue
        name, _, op = key.partition("__")
        op = op or "eq"
        target = resource.filters.get(name)
        if target is None:
            options = [*resource.filters, *RESERVED]
            close = difflib.get_close_matches(name, options, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise bad_query(f"Unknown query parameter '{key}'.{hint}", key)
        if op not in target.ops:
            allowed = ", ".join(sorted(target.ops))
            raise bad_query(f"'{name}' does not support '{op}'; operators: {allowed}.", key)
        query.conditions.append(_condition(target, op, raw, key))
    search = params.get("q")
    if search:
        if not resource.search_columns:
            raise bad_query("This collection has no searchable fields.", "q")
        pattern = f"%{_like_escape(parse_value(search, str, 'q'))}%"
        query.conditions.append(
            or_(*(c.ilike(pattern, escape="\\") for c in resource.search_columns))
        )
    if "limit" in params:
        query.limit = _int_param(params["limit"], "limit", 1, MAX_LIMIT)
    if "offset" in params:
        query.offset = _int_param(params["offset"], "offset", 0, 10_000_000)
    query.sort = parse_sort(params.get("sort"), resource)
    if params.get("cursor"):
        if "offset" in params:
            raise bad_query("Use either 'cursor' or 'offset', not both.", "cursor")
        query.after = decode_cursor(params["cursor"], query.sort, resource)
    return query


def _signature(sort: Sequence[SortKey]) -> str:
    return ",".join(("-" if k.descending else "") + k.name for k in sort)


def encode_cursor(row: Mapping[str, Any], sort: Sequence[SortKey]) -> str:
    values = [_plain(row[k.name]) for k in sort]
    payload = orjson.dumps({"s": _signature(sort), "v": values})
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    return value


def decode_cursor(raw: str, sort: Sequence[SortKey], resource: Resource) -> list[Any]:
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        signature, values = payload["s"], payload["v"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise bad_query(
            "The cursor is malformed; use next_cursor from a response.", "cursor"
        ) from None
    if signature != _signature(sort) or not isinstance(values, list) or len(values) != len(sort):
        raise bad_query("The cursor belongs to a different sort order.", "cursor")
    decoded: list[Any] = []
    for key, value in zip(sort, values, strict=True):
        if value is None:
            if not key.nullable:  # only a hand-made cursor; SQL cannot order after NULL
                raise bad_query(
                    "The cursor is malformed; use next_cursor from a response.", "cursor"
                )
            decoded.append(None)
            continue
        target = resource.filters[key.name]
        raw_value = value if isinstance(value, str) else orjson.dumps(value).decode()
        if target.python_type is bool:
            decoded.append(bool(value))
        else:
            decoded.append(_column_value(target, raw_value, "cursor"))
    return decoded


def order_by(sort: Sequence[SortKey], resource: Resource) -> list[Any]:
    """Nulls sort last in both directions on every database."""
    clauses: list[Any] = []
    for key in sort:
        column = resource.table.c[key.name]
        if key.nullable:
            clauses.append(column.is_(None))
        clauses.append(column.desc() if key.descending else column.asc())
    return clauses


def after_condition(sort: Sequence[SortKey], values: Sequence[Any], resource: Resource) -> Any:
    """Rows strictly after `values` in the sort order (lexicographic keyset comparison)."""
    parts: list[tuple[ColumnElement[bool], ColumnElement[bool]]] = []  # (equal, after)
    for key, value in zip(sort, values, strict=True):
        column = resource.table.c[key.name]
        if key.nullable:
            if value is None:
                parts.append((column.is_(None), false()))
                parts.append((true(), false()))
                continue
            parts.append((column.is_not(None), column.is_(None)))
        if isinstance(value, bool):
            # SQLAlchemy refuses `<` and `>` with True/False (the second page of
            # `sort=active` answered 500); false < true, so spell out what follows.
            follows = value is key.descending  # asc: after false; desc: after true
            after: ColumnElement[bool] = column == (not value) if follows else false()
        else:
            after = column < value if key.descending else column > value
        parts.append((column == value, after))
    alternatives = []
    for i, (_, after) in enumerate(parts):
        alternatives.append(and_(*(equal for equal, _ in parts[:i]), after))
    return or_(*alternatives)
