"""Rules that span objects: names, relations, references, defaults, keys, indexes and seeds."""

from __future__ import annotations

import keyword
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError
from pydantic_core import SchemaError

from microforge.runtime.db import database_url_problem

from .errors import Path, SpecIssue, suggest
from .model import (
    DecimalField,
    Entity,
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
    column_name,
)
from .naming import pluralize, snake
from .validate_auth import validate_auth
from .validate_cache import validate_cache
from .validate_idempotency import validate_idempotency
from .yaml_source import Source

AUTOMATIC_FIELDS = {"id", "created_at", "updated_at", "deleted_at", "version"}
# Query parameters of list endpoints and names the generated Python code relies on.
RESERVED_FIELDS = AUTOMATIC_FIELDS | {
    "sort",
    "limit",
    "offset",
    "cursor",
    "q",
    "self",
    "cls",
    "str",
    "int",
    "float",
    "bool",
    "bytes",
    "list",
    "dict",
    "set",
    "tuple",
    "object",
    "date",
    "datetime",
    "decimal",
    "uuid",
    "sa",
    "json",
    "any",
    "literal",
    "field",
    "copy",
    "schema",
    "validate",
    "construct",
    "model_config",
    "model_fields",
}
RESERVED_SERVICES = {
    "gateway",
    "health",
    "docs",
    "openapi",
    "redoc",
    "data",
    "migrations",
    "services",
    "tests",
    "microforge",
    "static",
    "api",
}
ENTITY_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# Field types stored as TEXT/JSON: no unique constraint or index (MariaDB cannot index them).
UNINDEXABLE = (TextField, JsonField, EnumListField)

Err = Callable[..., None]


def validate_spec(spec: Spec, source: Source) -> list[SpecIssue]:
    """Every cross-object problem of a spec whose shape the models already accepted."""
    issues: list[SpecIssue] = []

    def err(path: Path, message: str, *, key: bool = False) -> None:
        issues.append(source.issue(path, message, key=key))

    if not spec.services:
        err(("services",), "expected at least one service")
    for service_name, service in spec.services.items():
        spath: Path = ("services", service_name)
        _check_identifier(service_name, spath, "service", err)
        if service_name in RESERVED_SERVICES:
            err(
                spath,
                f"'{service_name}' is reserved (the gateway uses it); pick another service name",
                key=True,
            )
        _check_database(service.database, (*spath, "database"), err)
        if not service.entities:
            err((*spath, "entities"), "expected at least one entity")
        seen: dict[str, str] = {}
        for entity_name, entity in service.entities.items():
            epath: Path = (*spath, "entities", entity_name)
            if ENTITY_NAME.match(entity_name):
                _check_entity_names(entity_name, entity, epath, seen, err)
            else:
                err(
                    epath,
                    f"invalid entity name '{entity_name}': expected PascalCase "
                    "letters and digits, e.g. OrderItem",
                    key=True,
                )
            if not entity.fields:
                err((*epath, "fields"), "expected at least one field")
            columns: dict[str, str] = {}
            for field_name, field in entity.fields.items():
                fpath: Path = (*epath, "fields", field_name)
                _check_field(spec, service_name, entity_name, field_name, field, fpath, err)
                column = column_name(field_name, field)
                if column is not None:
                    if column in columns:
                        err(
                            fpath,
                            f"column '{column}' is already used by field '{columns[column]}'",
                            key=True,
                        )
                    columns[column] = field_name
            _check_groups(entity, epath, err)
            _check_seed(spec, service_name, entity, epath, err)
        _check_tables(service.entities, spath, err)
        _check_required_cycles(service_name, service.entities, err)
    validate_auth(spec, err, _check_value)
    validate_cache(spec, err)
    validate_idempotency(spec, err)
    return issues


def _check_tables(entities: dict[str, Entity], spath: Path, err: Err) -> None:
    """Link tables of many_to_many fields are named <entity>_<field>: not another table."""
    tables = {
        entity.plural or pluralize(snake(name)): f"entity '{name}'"
        for name, entity in entities.items()
    }
    for name, entity in entities.items():
        for fname, field in entity.fields.items():
            if not (isinstance(field, RelationField) and field.cardinality == "many_to_many"):
                continue
            table = f"{snake(name)}_{fname}"
            if table in tables:
                err(
                    (*spath, "entities", name, "fields", fname),
                    f"the link table '{table}' of this many_to_many collides with the table "
                    f"of {tables[table]}; rename the field",
                    key=True,
                )
            tables.setdefault(table, f"the link table of {name}.{fname}")


def _check_identifier(name: str, path: Path, what: str, err: Err) -> None:
    if not IDENTIFIER.match(name):
        err(
            path,
            f"invalid {what} name '{name}': expected lowercase letters, digits and "
            "underscores, starting with a letter",
            key=True,
        )
    elif keyword.iskeyword(name):
        err(path, f"'{name}' is a Python keyword; pick another {what} name", key=True)
    elif name.endswith("_") or "__" in name:
        err(path, f"invalid {what} name '{name}': no trailing or double underscores", key=True)


def _check_entity_names(
    name: str, entity: Entity, path: Path, seen: dict[str, str], err: Err
) -> None:
    plural = entity.plural or pluralize(snake(name))
    clash = next((v for v in (snake(name), plural) if seen.get(v, name) != name), None)
    if clash is not None:
        err(
            path,
            f"entity '{name}' collides with entity '{seen[clash]}' on the name "
            f"'{clash}' (names are compared in snake_case, singular and plural)",
            key=True,
        )
    for value in (snake(name), plural):
        seen.setdefault(value, name)
    if keyword.iskeyword(snake(name)):
        err(
            path, f"'{name}' becomes the Python keyword '{snake(name)}' in generated code", key=True
        )
    if keyword.iskeyword(plural):
        where = (*path, "plural") if entity.plural else path
        err(where, f"the plural '{plural}' is a Python keyword; set another plural", key=True)


def _check_database(url: str, path: Path, err: Err) -> None:
    if url == "sqlite":
        return
    problem = database_url_problem(url)
    if problem is not None:
        err(path, problem.replace("expected a", "expected 'sqlite' or a", 1))


def _check_field(
    spec: Spec, service: str, entity: str, name: str, field: FieldSpec, path: Path, err: Err
) -> None:
    _check_identifier(name, path, "field", err)
    if name in AUTOMATIC_FIELDS:
        err(path, f"'{name}' is added to every entity automatically; do not redefine it", key=True)
    elif name in RESERVED_FIELDS or name.startswith("model_"):
        err(
            path,
            f"'{name}' is reserved (list query parameter or generated-code name); "
            "pick another field name",
            key=True,
        )
    if isinstance(field, RelationField):
        _check_relation(spec, service, entity, field, path, err)
        return
    if isinstance(field, ReferenceField):
        _check_reference(spec, service, field, path, err)
        return
    problems = _field_problems(field, path)
    for where, message in problems:
        err(where, message)
    if isinstance(field, UNINDEXABLE):
        for option in ("unique", "indexed"):
            if getattr(field, option):
                err(
                    (*path, option),
                    f"a {field.type} field cannot be {option} (not indexable on MariaDB); "
                    "use a string field with max_length instead",
                )
    if isinstance(field, (JsonField, EnumListField)) and field.sortable:
        err((*path, "sortable"), f"a {field.type} field cannot be sortable")
    if not problems:
        for option in ("default", "example"):
            value = getattr(field, option, None)
            if value is not None:
                _check_value(field, value, (*path, option), option, err)


def _field_problems(field: FieldSpec, path: Path) -> list[tuple[Path, str]]:
    """Options of one scalar field that contradict each other."""
    out: list[tuple[Path, str]] = []
    if (
        isinstance(field, (IntegerField, DecimalField, FloatField))
        and field.min is not None
        and field.max is not None
        and field.min > field.max
    ):
        out.append(((*path, "min"), f"min ({field.min}) is above max ({field.max})"))
    if isinstance(field, IntegerField):
        low, high = INT32 if field.type == "integer" else INT64
        bits, hint = ("32", "; use type: bigint") if field.type == "integer" else ("64", "")
        for option in ("min", "max"):
            bound = getattr(field, option)
            if bound is not None and not low <= bound <= high:
                out.append(
                    ((*path, option), f"{option} ({bound}) does not fit a {bits}-bit integer{hint}")
                )
    if isinstance(field, DecimalField):
        if field.scale > field.precision:
            out.append(
                (
                    (*path, "scale"),
                    f"scale ({field.scale}) must not exceed precision ({field.precision})",
                )
            )
        else:
            digits = TypeAdapter(
                Annotated[Decimal, Field(max_digits=field.precision, decimal_places=field.scale)]
            )
            largest = Decimal(10) ** (field.precision - field.scale) - Decimal(10) ** -field.scale
            for option in ("min", "max"):
                bound = getattr(field, option)
                if bound is None:
                    continue
                try:
                    digits.validate_python(bound)
                except ValidationError:
                    out.append(
                        (
                            (*path, option),
                            f"{option} ({bound}) does not fit decimal({field.precision}, "
                            f"{field.scale}): at most {largest} with {field.scale} decimal "
                            "places",
                        )
                    )
    if isinstance(field, StringField):
        if field.min_length is not None and field.min_length > field.max_length:
            out.append(
                (
                    (*path, "min_length"),
                    f"min_length ({field.min_length}) is above max_length ({field.max_length})",
                )
            )
        if field.pattern is not None:
            reason = _pattern_problem(field.pattern)
            if reason:
                out.append(((*path, "pattern"), reason))
    if isinstance(field, (EnumField, EnumListField)):
        if not field.values:
            out.append(((*path, "values"), "an enum needs at least one value in 'values'"))
        seen: set[str] = set()
        for i, value in enumerate(field.values):
            if value in seen:
                out.append(((*path, "values", i), f"duplicate enum value '{value}'"))
            seen.add(value)
            if not value or len(value) > 64:
                out.append(((*path, "values", i), "enum values must be 1 to 64 characters long"))
    return out


def _pattern_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"invalid regular expression: {exc}"
    try:
        TypeAdapter(Annotated[str, Field(pattern=pattern)])
    except SchemaError as exc:
        detail = str(exc).strip().splitlines()[-1].removeprefix("error: ")
        return f"regular expression not supported by the request validator: {detail}"
    return None


def _check_value(field: FieldSpec, value: Any, path: Path, what: str, err: Err) -> None:
    """A default or seed value must pass the same validation as an API request."""
    from microforge.generator.types import python_input_type  # late: generator uses spec

    try:
        adapter: TypeAdapter[Any] = TypeAdapter(python_input_type(field))
    except SchemaError:
        return  # an unusable pattern, reported on the field itself
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        reason = "; ".join(e["msg"] for e in exc.errors())
        if isinstance(value, bool) and field.type in ("string", "text", "enum", "email", "url"):
            reason += " (YAML reads unquoted yes/no/on/off/true/false as booleans: quote it)"
        err(path, f"{what} {value!r} does not fit the {field.type} field: {reason}")


def _check_reference(spec: Spec, service: str, field: ReferenceField, path: Path, err: Err) -> None:
    target_service, _, target_entity = field.to.partition(".")
    if target_service not in spec.services:
        err(
            (*path, "to"),
            f"unknown service '{target_service}' in reference"
            f"{suggest(target_service, list(spec.services))} "
            f"(services: {', '.join(spec.services)})",
        )
        return
    entities = spec.services[target_service].entities
    if target_entity not in entities:
        err(
            (*path, "to"),
            f"service '{target_service}' has no entity '{target_entity}'"
            f"{suggest(target_entity, list(entities))} (entities: {', '.join(entities)})",
        )
    elif target_service == service:
        err(
            (*path, "to"),
            "a reference points to another service; within the same service use "
            f"type: relation, to: {target_entity}",
        )


def _check_relation(
    spec: Spec, service: str, entity: str, field: RelationField, path: Path, err: Err
) -> None:
    entities = spec.services[service].entities
    if field.to not in entities:
        others = [s for s, svc in spec.services.items() if field.to in svc.entities]
        if others:
            hint = (
                f"; '{field.to}' lives in service '{others[0]}': use type: reference, "
                f"to: {others[0]}.{field.to}"
            )
        else:
            hint = suggest(field.to, list(entities))
        err((*path, "to"), f"unknown entity '{field.to}' in service '{service}'{hint}")
        return
    if field.cardinality == "many_to_many":
        if field.on_delete is not None:
            err(
                (*path, "on_delete"),
                "on_delete does not apply to many_to_many (links are removed with either side)",
            )
        return
    if field.on_delete == "set_null" and field.required:
        err((*path, "on_delete"), "set_null needs an optional relation (required: false)")
    if field.to == entity and field.required:
        err(
            (*path, "required"),
            "a self relation must be optional (required: false); "
            "otherwise no first row can be created",
        )


def _check_groups(entity: Entity, epath: Path, err: Err) -> None:
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


def _check_group_member(fields: dict[str, FieldSpec], name: str, path: Path, err: Err) -> None:
    field = fields.get(name)
    if field is None:
        relation = name.removesuffix("_id")
        if relation != name and isinstance(fields.get(relation), RelationField):
            hint = f"; name the relation field '{relation}'"
        else:
            hint = suggest(name, list(fields))
        err(path, f"unknown field '{name}'{hint} (fields: {', '.join(fields) or 'none'})")
    elif isinstance(field, RelationField) and field.cardinality == "many_to_many":
        err(path, f"'{name}' is many_to_many and has no column to index")
    elif isinstance(field, UNINDEXABLE):
        err(path, f"'{name}' is a {field.type} field and cannot be indexed")


def _id_type(kind: str) -> Any:
    return uuid.UUID if kind == "uuid" else Annotated[int, Field(strict=True, ge=1)]


def _check_id(kind: str, value: Any, path: Path, what: str, err: Err) -> None:
    try:
        TypeAdapter(_id_type(kind)).validate_python(value)
    except ValidationError:
        expected = "a UUID string" if kind == "uuid" else "a positive integer"
        err(path, f"{what} must be {expected} ({kind} id), got {value!r}")


def _check_seed(spec: Spec, service: str, entity: Entity, epath: Path, err: Err) -> None:
    """Seed rows as `microforge seed` loads them (see microforge.runtime.seed).

    Values are given by field name; a to-one relation either as `<field>_id` or as
    `<field>: {target field: value, ...}`, a lookup of exactly one existing target row; an
    explicit `id` is allowed (rows of uuid entities otherwise get ids from their position).
    """
    entities = spec.services[service].entities
    keys: dict[str, str] = {"id": "id"}  # accepted row key -> field name
    for name, field in entity.fields.items():
        if isinstance(field, RelationField) and field.cardinality != "many_to_many":
            keys[f"{name}_id"] = name
            keys[name] = name
        elif not isinstance(field, RelationField):
            keys[name] = name
    ids: dict[str, int] = {}
    for i, row in enumerate(entity.seed):
        rpath: Path = (*epath, "seed", i)
        given: dict[str, str] = {}  # field name -> the key that set it
        for key, value in row.items():
            kpath: Path = (*rpath, key)
            if key not in keys:
                err(kpath, _unknown_seed_key(key, entity, list(keys)), key=True)
                continue
            if key == "id":
                _check_id(entity.id, value, kpath, "id", err)
                if repr(value) in ids:
                    err(kpath, f"id {value!r} is already used by seed row {ids[repr(value)]}")
                ids.setdefault(repr(value), i)
                continue
            name = keys[key]
            if name in given:
                err(kpath, f"'{name}' is already given as '{given[name]}'", key=True)
                continue
            given[name] = key
            field = entity.fields[name]
            if value is None:
                if field.required:
                    err(kpath, f"'{key}' is required and cannot be null")
            elif isinstance(field, RelationField):
                target = entities.get(field.to)
                if target is None:
                    continue
                if key == name:
                    _check_lookup(target, field.to, value, kpath, err)
                else:
                    _check_id(target.id, value, kpath, f"'{key}'", err)
            elif isinstance(field, ReferenceField):
                target_service, _, target_entity = field.to.partition(".")
                other = spec.services.get(target_service)
                if other is not None and target_entity in other.entities:
                    _check_id(other.entities[target_entity].id, value, kpath, f"'{key}'", err)
            else:
                _check_value(field, value, kpath, "value", err)
        for name, field in entity.fields.items():
            if isinstance(field, RelationField) and field.cardinality == "many_to_many":
                continue
            has_default = getattr(field, "default", None) is not None
            if field.required and not has_default and name not in given:
                what = (
                    f"'{name}_id' or '{name}'" if isinstance(field, RelationField) else f"'{name}'"
                )
                err(rpath, f"missing {what} (the field is required and has no default)")
    _check_seed_unique(entity, epath, err)


def _check_lookup(target: Entity, target_name: str, value: Any, path: Path, err: Err) -> None:
    """`category: {slug: laptops}` must name columns of the target entity."""
    columns = ["id"]
    for name, field in target.fields.items():
        column = column_name(name, field)
        if column is not None:
            columns.append(column)
    if not isinstance(value, dict) or not value:
        err(
            path,
            f"expected the id as '{path[-1]}_id', or a mapping of {target_name} fields that "
            f"finds one row, e.g. {{{columns[-1]}: ...}}",
        )
        return
    for key, item in value.items():
        if key not in columns:
            err(
                (*path, key),
                f"{target_name} has no field '{key}'{suggest(key, columns)} "
                f"(fields: {', '.join(columns)})",
                key=True,
            )
            continue
        looked_up = target.fields.get(key)
        if looked_up is not None and item is not None:
            _check_value(looked_up, item, (*path, key), "value", err)


def _unknown_seed_key(key: str, entity: Entity, accepted: list[str]) -> str:
    field = entity.fields.get(key)
    if isinstance(field, RelationField) and field.cardinality == "many_to_many":
        return f"'{key}' is many_to_many; seed rows cannot set links (add them through the API)"
    if key in AUTOMATIC_FIELDS:
        return f"'{key}' is set automatically; leave it out of seed rows"
    return f"unknown field '{key}'{suggest(key, accepted)} (fields: {', '.join(accepted)})"


def _check_seed_unique(entity: Entity, epath: Path, err: Err) -> None:
    for name, field in entity.fields.items():
        if isinstance(field, (RelationField, ReferenceField)) or not field.unique:
            continue
        seen: dict[str, int] = {}
        for i, row in enumerate(entity.seed):
            if row.get(name) is None:
                continue
            value = repr(row[name])
            if value in seen:
                err(
                    (*epath, "seed", i, name),
                    f"'{name}' is unique but seed row {seen[value]} has the same value",
                )
            seen.setdefault(value, i)


def _check_required_cycles(service: str, entities: dict[str, Entity], err: Err) -> None:
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
                loop = trail[trail.index(target) :]
                cycle = [node, *loop[: loop.index(node)], node]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    err(
                        ("services", service, "entities", node, "fields", fname),
                        "required relations form a loop ("
                        + " -> ".join(cycle)
                        + "); make one of them optional (required: false)",
                        key=True,
                    )
                continue
            visit(target, [*trail, target])

    for start in graph:
        visit(start, [start])


__all__ = [
    "AUTOMATIC_FIELDS",
    "RESERVED_FIELDS",
    "RESERVED_SERVICES",
    "column_name",
    "validate_spec",
]
