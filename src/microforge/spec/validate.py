"""Rules that span objects: names, relations, references, defaults, keys and indexes."""

from __future__ import annotations

import keyword
import re
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .errors import Path, SpecIssue
from .model import (
    DecimalField,
    EnumField,
    EnumListField,
    FieldSpec,
    FloatField,
    IntegerField,
    JsonField,
    ReferenceField,
    RelationField,
    Spec,
    StringField,
    TextField,
)
from .naming import pluralize, snake
from .yaml_source import Source

AUTOMATIC_FIELDS = {"id", "created_at", "updated_at", "deleted_at", "version"}
# Query parameters of list endpoints and names the generated Python code relies on.
RESERVED_FIELDS = AUTOMATIC_FIELDS | {
    "sort", "limit", "offset", "cursor", "q", "self", "cls",
    "str", "int", "float", "bool", "bytes", "list", "dict", "set", "tuple", "object",
    "date", "datetime", "decimal", "uuid", "sa", "json", "any", "literal", "field",
    "copy", "schema", "validate", "construct", "model_config", "model_fields",
}
RESERVED_SERVICES = {
    "gateway", "health", "docs", "openapi", "redoc", "data", "migrations", "services",
    "tests", "microforge", "static", "api",
}
SUPPORTED_DRIVERS = {"sqlite+aiosqlite", "postgresql+asyncpg", "mysql+asyncmy", "mariadb+asyncmy"}
ENTITY_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
INT32 = (-(2**31), 2**31 - 1)


def validate_spec(spec: Spec, source: Source) -> list[SpecIssue]:
    issues: list[SpecIssue] = []

    def err(path: Path, message: str, *, key: bool = False) -> None:
        issues.append(source.issue(path, message, key=key))

    if not spec.services:
        err(("services",), "expected at least one service")
    for service_name, service in spec.services.items():
        spath: Path = ("services", service_name)
        _check_identifier(service_name, spath, "service", err)
        if service_name in RESERVED_SERVICES:
            err(spath, f"'{service_name}' is reserved (the gateway uses it); pick another name", key=True)
        _check_database(service.database, (*spath, "database"), err)
        if not service.entities:
            err((*spath, "entities"), "expected at least one entity")
        seen: dict[str, str] = {}
        for entity_name, entity in service.entities.items():
            epath: Path = (*spath, "entities", entity_name)
            if not ENTITY_NAME.match(entity_name):
                err(epath, f"invalid entity name '{entity_name}': expected PascalCase "
                    "letters and digits, e.g. OrderItem", key=True)
                continue
            plural = entity.plural or pluralize(snake(entity_name))
            for value in dict.fromkeys((snake(entity_name), plural)):
                if value in seen and seen[value] != entity_name:
                    err(epath, f"entity '{entity_name}' collides with entity '{seen[value]}' "
                        f"on the name '{value}' (names are compared in snake_case)", key=True)
                seen.setdefault(value, entity_name)
            if keyword.iskeyword(snake(entity_name)) or keyword.iskeyword(plural):
                err(epath, f"'{entity_name}' becomes a Python keyword in generated code", key=True)
            if not entity.fields:
                err((*epath, "fields"), "expected at least one field")
            columns: dict[str, str] = {}
            for field_name, field in entity.fields.items():
                fpath: Path = (*epath, "fields", field_name)
                _check_field(spec, service_name, entity_name, field_name, field, fpath, err)
                column = column_name(field_name, field)
                if column is not None:
                    if column in columns:
                        err(fpath, f"column '{column}' is already used by field "
                            f"'{columns[column]}'", key=True)
                    columns[column] = field_name
            for attr in ("unique_together", "indexes"):
                groups: list[list[str]] = getattr(entity, attr)
                seen_groups: set[tuple[str, ...]] = set()
                for i, group in enumerate(groups):
                    gpath: Path = (*epath, attr, i)
                    if not group:
                        err(gpath, "expected at least one field name")
                    if len(set(group)) != len(group):
                        err(gpath, "a field is listed twice")
                    if tuple(group) in seen_groups:
                        err(gpath, "this field list is declared twice")
                    seen_groups.add(tuple(group))
                    for j, name in enumerate(group):
                        _check_group_member(entity.fields, name, (*gpath, j), err)
        _check_required_cycles(service_name, service.entities, err)
    return issues


def column_name(field_name: str, field: FieldSpec) -> str | None:
    """The column a field is stored in (None for many-to-many link tables)."""
    if isinstance(field, RelationField):
        return None if field.cardinality == "many_to_many" else f"{field_name}_id"
    return field_name


def _check_identifier(name: str, path: Path, what: str, err: Any) -> None:
    if not re.match(r"^[a-z][a-z0-9_]*$", name):
        err(path, f"invalid {what} name '{name}': expected lowercase letters, digits and "
            "underscores, starting with a letter", key=True)
    elif keyword.iskeyword(name) or keyword.issoftkeyword(name):
        err(path, f"'{name}' is a Python keyword; pick another {what} name", key=True)
    elif name.endswith("_") or "__" in name:
        err(path, f"invalid {what} name '{name}': no trailing or double underscores", key=True)


def _check_database(url: str, path: Path, err: Any) -> None:
    if url == "sqlite":
        return
    try:
        parsed = make_url(url)
    except ArgumentError:
        err(path, f"expected 'sqlite' or a SQLAlchemy URL such as "
            f"postgresql+asyncpg://user:pass@host/db, got {url!r}")
        return
    if parsed.drivername not in SUPPORTED_DRIVERS:
        err(path, f"unsupported driver '{parsed.drivername}'; expected one of: "
            f"{', '.join(sorted(SUPPORTED_DRIVERS))}")


def _check_field(
    spec: Spec, service: str, entity: str, name: str, field: FieldSpec, path: Path, err: Any
) -> None:
    _check_identifier(name, path, "field", err)
    if name in AUTOMATIC_FIELDS:
        err(path, f"'{name}' is added to every entity automatically; do not redefine it", key=True)
    elif name in RESERVED_FIELDS or name.startswith("model_"):
        err(path, f"'{name}' is reserved (list query parameter or generated-code name); "
            "pick another field name", key=True)
    if isinstance(field, RelationField):
        _check_relation(spec, service, entity, field, path, err)
        return
    if isinstance(field, ReferenceField):
        target_service, _, target_entity = field.to.partition(".")
        if target_service not in spec.services:
            err((*path, "to"), f"unknown service '{target_service}' in reference "
                f"(services: {', '.join(spec.services)})")
        elif target_entity not in spec.services[target_service].entities:
            err((*path, "to"), f"service '{target_service}' has no entity '{target_entity}'")
        elif target_service == service:
            err((*path, "to"), "a reference points to another service; use a relation "
                "within the same service")
        return
    if isinstance(field, (IntegerField, DecimalField, FloatField)):
        if field.min is not None and field.max is not None and field.min > field.max:
            err((*path, "min"), f"min ({field.min}) is above max ({field.max})")
    if isinstance(field, DecimalField) and field.scale > field.precision:
        err((*path, "scale"), f"scale ({field.scale}) must not exceed precision ({field.precision})")
    if isinstance(field, StringField):
        if field.min_length is not None and field.min_length > field.max_length:
            err((*path, "min_length"), f"min_length ({field.min_length}) is above "
                f"max_length ({field.max_length})")
        if field.pattern is not None:
            try:
                re.compile(field.pattern)
            except re.error as exc:
                err((*path, "pattern"), f"invalid regular expression: {exc}")
    if isinstance(field, (EnumField, EnumListField)):
        if not field.values:
            err((*path, "values"), "an enum needs at least one value")
        if len(set(field.values)) != len(field.values):
            err((*path, "values"), "enum values must be distinct")
        for i, value in enumerate(field.values):
            if not value or len(value) > 64:
                err((*path, "values", i), "enum values must be 1 to 64 characters long")
    if isinstance(field, (TextField, JsonField, EnumListField)) and (field.unique or field.indexed):
        err(path, f"a {field.type} field cannot be unique or indexed (not indexable on MariaDB)")
    if field.default is not None:
        _check_default(field, path, err)


def _check_default(field: FieldSpec, path: Path, err: Any) -> None:
    from microforge.generator.types import python_input_type  # late: generator depends on spec

    try:
        TypeAdapter(python_input_type(field)).validate_python(field.default)
    except ValidationError as exc:
        reason = "; ".join(e["msg"] for e in exc.errors())
        err((*path, "default"), f"default {field.default!r} does not fit the field: {reason}")


def _check_relation(
    spec: Spec, service: str, entity: str, field: RelationField, path: Path, err: Any
) -> None:
    entities = spec.services[service].entities
    if field.to not in entities:
        hint = ""
        others = [s for s, svc in spec.services.items() if field.to in svc.entities]
        if others:
            hint = f"; '{field.to}' lives in service '{others[0]}': use type: reference, to: {others[0]}.{field.to}"
        err((*path, "to"), f"unknown entity '{field.to}' in service '{service}'{hint}")
        return
    if field.cardinality == "many_to_many":
        if field.on_delete is not None:
            err((*path, "on_delete"), "on_delete does not apply to many_to_many (links are "
                "removed with either side)")
        return
    if field.on_delete == "set_null" and field.required:
        err((*path, "on_delete"), "set_null needs an optional relation (required: false)")
    if field.to == entity and field.required:
        err((*path, "required"), "a self relation must be optional (required: false); "
            "otherwise no first row can be created")


def _check_group_member(fields: dict[str, FieldSpec], name: str, path: Path, err: Any) -> None:
    field = fields.get(name)
    if field is None:
        err(path, f"unknown field '{name}' (fields: {', '.join(fields) or 'none'})")
    elif isinstance(field, RelationField) and field.cardinality == "many_to_many":
        err(path, f"'{name}' is many_to_many and has no column to index")
    elif isinstance(field, (TextField, JsonField, EnumListField)):
        err(path, f"'{name}' is a {field.type} field and cannot be indexed")


def _check_required_cycles(service: str, entities: dict[str, Any], err: Any) -> None:
    """Required to-one relations must not form a loop: no first row could be inserted."""
    graph: dict[str, list[tuple[str, str]]] = {}
    for name, entity in entities.items():
        for fname, field in entity.fields.items():
            if (
                isinstance(field, RelationField)
                and field.cardinality != "many_to_many"
                and field.required
                and field.to != name
                and field.to in entities
            ):
                graph.setdefault(name, []).append((field.to, fname))
    reported: set[frozenset[str]] = set()

    def visit(node: str, trail: list[str]) -> None:
        for target, fname in graph.get(node, []):
            if target in trail:
                cycle = [*trail[trail.index(target):], target]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    err(("services", service, "entities", node, "fields", fname),
                        "required relations form a loop (" + " -> ".join(cycle)
                        + "); make one of them optional")
                continue
            visit(target, [*trail, target])

    for start in graph:
        visit(start, [start])


__all__ = ["column_name", "validate_spec"]
