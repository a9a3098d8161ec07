"""The generation plan: the spec resolved into everything templates need, computed once.

Templates only format; every naming decision, type mapping and ordering happens here.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from microforge.spec.model import (
    DecimalField,
    Entity,
    EntityCache,
    EntityIdempotency,
    EnumField,
    EnumListField,
    FieldSpec,
    FloatField,
    IntegerField,
    ReferenceField,
    RelationField,
    Spec,
    StringField,
    TextField,
)
from microforge.spec.naming import kebab, pluralize, snake

from .access_plan import AccessPlan, AuthPlan, access_plan, auth_plan
from .types import INT_BOUNDS

ON_DELETE_SQL = {"restrict": "RESTRICT", "cascade": "CASCADE", "set_null": "SET NULL"}


@dataclass
class ColumnPlan:
    name: str  # column and JSON name
    field_name: str
    kind: str
    sa_type: str  # SQLAlchemy type expression
    py_type: str  # annotation in Pydantic schemas
    constraints: dict[str, str]  # Field(...) keyword arguments, as code
    required: bool
    nullable: bool
    unique: bool
    indexed: bool
    sortable: bool
    searchable: bool
    description: str
    default: Any = None
    has_default: bool = False
    foreign_key: str | None = None  # "table.id"
    on_delete: str | None = None
    target_entity: str | None = None
    example: Any = None
    server_default: str | None = None  # SQL default, so migrations can add NOT NULL columns
    comment: str = ""  # the spec's own description, stored as the column comment
    test_value: str | None = None  # expression (may use `n`) for generated tests
    stamped: bool = False  # the owner column: optional on create, the caller's id by default
    read_roles: list[str] | None = None  # only these roles see it (None: everyone)

    @property
    def compare_on_create(self) -> bool:
        """Whether the API echoes the sent value unchanged (URLs and decimals normalise)."""
        return self.kind not in {"url", "decimal", "datetime", "float"} and not self.target_entity


@dataclass
class LinkPlan:
    name: str  # field name on the owning entity
    collection: str  # kebab sub-route segment
    table: str
    source_column: str
    target_column: str
    target: EntityPlan


@dataclass
class EntityPlan:
    name: str  # PascalCase
    snake: str
    plural: str  # snake plural: table and module names
    collection: str  # kebab plural: URL segment
    description: str
    id_kind: str  # uuid | integer
    soft_delete: bool
    columns: list[ColumnPlan]
    unique_together: list[list[str]]
    indexes: list[list[str]]
    seed: list[dict[str, Any]]
    links: list[LinkPlan] = field(default_factory=list)
    depends_on: set[str] = field(default_factory=set)
    untestable: str = ""  # fields generated tests cannot invent values for
    access: AccessPlan | None = None  # None: the project has no auth section
    cache: EntityCache | None = None  # the spec's cache section
    if_match: str = "optional"  # required: PATCH and DELETE without If-Match are 428
    idempotency: EntityIdempotency = field(default_factory=EntityIdempotency)

    @property
    def human(self) -> str:
        return self.snake.replace("_", " ")

    def idempotent(self, action: str) -> bool:
        """Whether ``action`` (create or update) honours Idempotency-Key."""
        mode: str = getattr(self.idempotency, action)
        return mode != "off"

    @property
    def if_match_required(self) -> bool:
        return self.if_match == "required"

    @property
    def a_human(self) -> str:
        """'a product', 'an order item': for summaries and docstrings."""
        return with_article(self.human)

    @property
    def human_plural(self) -> str:
        return self.plural.replace("_", " ")

    @property
    def example(self) -> dict[str, Any]:
        return {c.name: c.example for c in self.columns if c.example is not None}

    @property
    def not_nullable(self) -> list[ColumnPlan]:
        return [c for c in self.columns if not c.nullable]

    @property
    def unique_constraints(self) -> list[list[str]]:
        singles = [[c.name] for c in self.columns if c.unique]
        return singles + [g for g in self.unique_together if g not in singles]

    @property
    def all_indexes(self) -> list[list[str]]:
        unique = self.unique_constraints
        singles = [[c.name] for c in self.columns if c.indexed and [c.name] not in unique]
        return singles + [g for g in self.indexes if g not in singles and g not in unique]

    @property
    def missing_id(self) -> str:
        return "00000000-0000-7000-8000-000000000000" if self.id_kind == "uuid" else "999999999"

    @property
    def filter_column(self) -> str | None:
        kinds = {"string", "email", "enum", "integer", "bigint", "boolean", "date", "uuid"}
        return next((c.name for c in self.columns if c.kind in kinds and c.test_value), None)

    @property
    def patch_column(self) -> str | None:
        kinds = {"string", "text", "email", "integer", "bigint", "enum", "boolean", "json"}
        candidates = [c for c in self.columns if c.kind in kinds and c.test_value]
        return next((c.name for c in candidates if c.unique), None) or next(
            (c.name for c in candidates), None
        )

    @property
    def invalid_column(self) -> str | None:
        return next((c.name for c in self.columns if c.kind != "json" and c.test_value), None)

    @property
    def id_py_type(self) -> str:
        return "uuid.UUID" if self.id_kind == "uuid" else "int"

    @property
    def sortable(self) -> list[str]:
        return [c.name for c in self.columns if c.sortable]

    @property
    def searchable(self) -> list[str]:
        return [c.name for c in self.columns if c.searchable]

    @property
    def required_parents(self) -> list[ColumnPlan]:
        return [c for c in self.columns if c.target_entity and c.required]


@dataclass
class ServicePlan:
    name: str
    package: str
    title: str
    description: str
    database: str
    entities: list[EntityPlan]  # parents before children
    auth: AuthPlan | None = None

    @property
    def env_prefix(self) -> str:
        return f"{self.name.upper()}_"

    @property
    def is_identity(self) -> bool:
        return self.auth is not None and self.auth.identity_service == self.name

    @property
    def user_entity(self) -> EntityPlan:
        assert self.auth is not None
        return self.entity(self.auth.user_entity)

    def entity(self, name: str) -> EntityPlan:
        return next(e for e in self.entities if e.name == name)

    @property
    def idempotent(self) -> bool:
        """Whether a route of this service takes Idempotency-Key (it then has the table)."""
        return any(e.idempotent("create") or e.idempotent("update") for e in self.entities)

    @property
    def idempotency_in_redis(self) -> bool:
        return any(
            e.idempotency.store == "redis" and (e.idempotent("create") or e.idempotent("update"))
            for e in self.entities
        )


@dataclass
class ProjectPlan:
    name: str
    description: str
    version: str
    services: list[ServicePlan]
    auth: AuthPlan | None = None


def build_plan(spec: Spec) -> ProjectPlan:
    services = [
        _service(spec, name, svc.description, svc.database, svc.entities)
        for name, svc in spec.services.items()
    ]
    auth = auth_plan(spec)
    if auth is not None:
        for service in services:
            service.auth = auth
            _apply_access(auth, service, spec.services[service.name].entities)
    return ProjectPlan(
        name=spec.name,
        description=spec.description or f"The {spec.name} services.",
        version=spec.version,
        services=services,
        auth=auth,
    )


def _apply_access(auth: AuthPlan, service: ServicePlan, entities: dict[str, Entity]) -> None:
    for plan in service.entities:
        plan.access = access = access_plan(auth, entities, plan.name)
        by_name = {c.name: c for c in plan.columns}
        if access.own is not None and access.own in by_name:
            owner = by_name[access.own]
            owner.stamped = True
            if not access.all_rows:
                # Tests call as a user holding every role; without all_rows roles that user
                # is scoped too, so rows it creates must name it as their owner.
                if owner.target_entity:
                    plan.untestable = plan.untestable or (
                        f"{owner.name} (the owner relation needs all_rows roles for tests)"
                    )
                else:
                    owner.test_value = "str(TEST_USER_ID)"
        for rule in access.fields:
            if rule.column in by_name:
                by_name[rule.column].read_roles = rule.read


def _service(
    spec: Spec,
    name: str,
    description: str | None,
    database: str,
    entities: dict[str, Entity],
) -> ServicePlan:
    plans = {ename: _entity(spec, ename, entity) for ename, entity in entities.items()}
    # Link tables that collide with entity tables were refused by spec validation.
    for ename, entity in entities.items():
        plan = plans[ename]
        for fname, fspec in entity.fields.items():
            if isinstance(fspec, RelationField) and fspec.cardinality == "many_to_many":
                target = plans[fspec.to]
                link_table = f"{plan.snake}_{fname}"
                target_column = (
                    f"{target.snake}_id" if target.name != plan.name else f"{snake(fname)}_id"
                )
                plan.links.append(
                    LinkPlan(
                        name=fname,
                        collection=kebab(fname),
                        table=link_table,
                        source_column=f"{plan.snake}_id",
                        target_column=target_column,
                        target=target,
                    )
                )
    for plan in plans.values():
        missing = [
            c.name
            for c in plan.columns
            if c.required and c.test_value is None and not c.target_entity
        ]
        plan.untestable = ", ".join(missing)
    ordered = _parents_first(list(plans.values()))
    return ServicePlan(
        name=name,
        package=f"{name}_service",
        title=f"{spec.name} {name}",
        description=description or f"The {name} service of {spec.name}.",
        database=database,
        entities=ordered,
    )


def with_article(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _propagate_untestable(plans: dict[str, EntityPlan]) -> None:
    """A row whose required parent cannot be made in tests cannot be made either."""
    changed = True
    while changed:
        changed = False
        for plan in plans.values():
            if plan.untestable:
                continue
            for column in plan.required_parents:
                parent = plans.get(column.target_entity or "")
                if parent is not None and parent.untestable and parent is not plan:
                    plan.untestable = f"{column.name} (via {parent.name}: {parent.untestable})"
                    changed = True
                    break


def _parents_first(entities: list[EntityPlan]) -> list[EntityPlan]:
    """Order entities so every foreign key points at an entity already created."""
    by_name = {e.name: e for e in entities}
    done: list[EntityPlan] = []
    seen: set[str] = set()

    def visit(entity: EntityPlan, trail: set[str]) -> None:
        if entity.name in seen or entity.name in trail:
            return
        for parent in sorted(entity.depends_on):
            if parent != entity.name:
                visit(by_name[parent], trail | {entity.name})
        seen.add(entity.name)
        done.append(entity)

    for entity in entities:
        visit(entity, set())
    return done


def _entity(spec: Spec, name: str, entity: Entity) -> EntityPlan:
    plural = entity.plural or pluralize(snake(name))
    human = snake(name).replace("_", " ")
    columns: list[ColumnPlan] = []
    depends: set[str] = set()
    for fname, fspec in entity.fields.items():
        column = _column(spec, fname, fspec)
        if column is None:
            continue
        if isinstance(fspec, RelationField):
            depends.add(fspec.to)
        columns.append(column)
    by_field = {c.field_name: c.name for c in columns}
    return EntityPlan(
        name=name,
        snake=snake(name),
        plural=plural,
        collection=kebab(plural),
        description=entity.description or f"{with_article(human)}.".capitalize(),
        id_kind=entity.id,
        soft_delete=entity.soft_delete,
        columns=columns,
        unique_together=[[by_field[f] for f in group] for group in entity.unique_together],
        indexes=[[by_field[f] for f in group] for group in entity.indexes],
        seed=[dict(row) for row in entity.seed],
        depends_on=depends,
        cache=entity.cache,
        if_match=entity.if_match,
        idempotency=entity.idempotency,
    )


def _target_id_kind(spec: Spec, service: str | None, entity: str) -> str:
    for svc_name, svc in spec.services.items():
        if (service is None or svc_name == service) and entity in svc.entities:
            return svc.entities[entity].id
    return "uuid"


def _column(spec: Spec, name: str, f: FieldSpec) -> ColumnPlan | None:
    description = f.description or ""
    common: dict[str, Any] = {
        "comment": description,
        "field_name": name,
        "kind": f.type,
        "required": f.required,
        "nullable": not f.required,
        "sortable": f.sortable,
        "indexed": f.indexed,
        "description": description,
    }
    if isinstance(f, RelationField):
        if f.cardinality == "many_to_many":
            return None
        id_kind = _target_id_kind(spec, None, f.to)
        target_table = None
        for svc in spec.services.values():
            if f.to in svc.entities:
                target_table = svc.entities[f.to].plural or pluralize(snake(f.to))
                break
        on_delete = f.on_delete or ("restrict" if f.required else "set_null")
        return ColumnPlan(
            name=f"{name}_id",
            sa_type="sa.Uuid()" if id_kind == "uuid" else "sa.Integer()",
            py_type="uuid.UUID" if id_kind == "uuid" else "int",
            constraints={},
            unique=f.cardinality == "one_to_one",
            searchable=False,
            foreign_key=f"{target_table}.id",
            on_delete=ON_DELETE_SQL[on_delete],
            target_entity=f.to,
            example=_example_id(id_kind),
            **{**common, "description": description or f"Id of the related {f.to}."},
        )
    if isinstance(f, ReferenceField):
        service, _, entity = f.to.partition(".")
        id_kind = _target_id_kind(spec, service, entity)
        return ColumnPlan(
            name=name,
            sa_type="sa.Uuid()" if id_kind == "uuid" else "sa.BigInteger()",
            py_type="uuid.UUID" if id_kind == "uuid" else "int",
            constraints={},
            unique=False,
            searchable=False,
            example=_example_id(id_kind),
            test_value=_id_test_value(id_kind),
            **{
                **common,
                "description": description or f"Id of a {entity} in the {service} service.",
            },
        )
    sa_type, py_type, constraints = _scalar_types(f)
    column = ColumnPlan(
        name=name,
        sa_type=sa_type,
        py_type=py_type,
        constraints=constraints,
        unique=f.unique,
        searchable=bool(getattr(f, "searchable", False)),
        default=_plain_default(f),
        has_default=f.default is not None,
        example=_example(f, name),
        **common,
    )
    column.server_default = _server_default(f)
    column.test_value = _test_value(f, name)
    if column.example is None and column.test_value is not None:
        # The expression was built here from constants and `n`; evaluating it is safe.
        column.example = eval(column.test_value, {"n": 1})
    return column


# Shapes tried, in order, for values that must match a field's pattern and vary per call.
_PATTERN_SHAPES = (
    "item-{n}", "ITEM-{n}", "ITEM{n}", "item{n}", "{n}", "x{n:05d}", "X{n:05d}",
    "ABC-{n:04d}", "AB{n:04d}", "+{n:010d}",
)  # fmt: skip
_FIXED_SHAPES = ("EUR", "US", "ABC", "abc", "item", "x", "X", "0")


def _pattern_test_value(f: StringField, example: Any) -> str | None:
    """A value expression matching the pattern (and length), varying with `n` when unique."""
    assert f.pattern is not None
    regex = re.compile(f.pattern)

    def fits(text: str) -> bool:
        low = f.min_length or 0
        return low <= len(text) <= f.max_length and regex.fullmatch(text) is not None

    for shape in _PATTERN_SHAPES:
        if all(fits(shape.format(n=n)) for n in (1, 42, 987, 12345)):
            return f"f{shape!r}"
    if f.unique:
        return None
    if example is not None and isinstance(example, str) and fits(example):
        return repr(example)
    return next((repr(text) for text in _FIXED_SHAPES if fits(text)), None)


def _server_default(f: FieldSpec) -> str | None:
    value = getattr(f, "default", None)
    if value is None or isinstance(f, EnumListField) or f.type == "json":
        return None
    if isinstance(value, bool):
        return 'sa.text("true")' if value else 'sa.text("false")'  # valid on all three
    if isinstance(value, (int, float, Decimal)):
        return f"sa.text({str(value)!r})"
    if isinstance(value, str):
        quoted = value.replace("'", "''")
        return f"sa.text({chr(39) + quoted + chr(39)!r})"
    return None


def _test_value(f: FieldSpec, name: str) -> str | None:
    """Code for a valid value that differs per call (uses the counter `n`)."""
    example = getattr(f, "example", None)
    if isinstance(f, StringField):
        if f.pattern is not None:
            return _pattern_test_value(f, example)
        width = f.max_length
        code = f'f"{{n}} {name.replace("_", " ")}"[:{width}]'
        if f.min_length:
            code = f"{code}.ljust({f.min_length}, 'x')"
        return code
    if isinstance(f, TextField):
        return f'f"Some {name.replace("_", " ")} {{n}}."' + (
            f"[: {f.max_length}]" if f.max_length else ""
        )
    if isinstance(f, IntegerField):
        low, high = INT_BOUNDS[f.type]
        low = f.min if f.min is not None else max(low, 0)
        high = f.max if f.max is not None else min(high, 2**31 - 1)
        return f"{low} + n % {high - low + 1}"
    if isinstance(f, DecimalField):
        d_low = f.min if f.min is not None else Decimal(0)
        d_high = f.max if f.max is not None else Decimal(10) ** (f.precision - f.scale) - 1
        span = int(d_high - d_low) + 1 if d_high - d_low >= 1 else 1
        return f"str({d_low!s} + n % {span})" if span > 1 else repr(str(d_low))
    if isinstance(f, FloatField):
        f_low = f.min if f.min is not None else 0.0
        f_high = f.max if f.max is not None else 1e9
        return f"{f_low!r} + n % {max(int(f_high - f_low), 1)}"
    kinds = {
        "email": 'f"user{n}@example.com"',
        "url": 'f"https://example.com/items/{n}"',
        "boolean": "n % 2 == 0",
        "date": "(dt.date(2026, 1, 1) + dt.timedelta(days=n)).isoformat()",
        "datetime": "dt.datetime(2026, 1, 1, n % 24, n % 60, tzinfo=dt.UTC).isoformat()",
        "uuid": "str(uuid.uuid4())",
        "json": '{"n": n}',
    }
    if isinstance(f, EnumField):
        return repr(f.values[0]) if f.values else None
    if isinstance(f, EnumListField):
        return repr(f.values[:1])
    return kinds.get(f.type)


def _plain_default(f: FieldSpec) -> Any:
    value = getattr(f, "default", None)
    if isinstance(f, DecimalField) and value is not None:
        return Decimal(str(value))
    return value


def _scalar_types(f: FieldSpec) -> tuple[str, str, dict[str, str]]:
    c: dict[str, str] = {}
    if isinstance(f, StringField):
        c["max_length"] = repr(f.max_length)
        if f.min_length is not None:
            c["min_length"] = repr(f.min_length)
        if f.pattern is not None:
            c["pattern"] = repr(f.pattern)
        return f"sa.String({f.max_length})", "str", c
    if isinstance(f, TextField):
        if f.max_length is not None:
            c["max_length"] = repr(f.max_length)
        return "sa.Text()", "str", c
    if isinstance(f, IntegerField):
        low, high = INT_BOUNDS[f.type]
        c["ge"] = repr(f.min if f.min is not None else low)
        c["le"] = repr(f.max if f.max is not None else high)
        return ("sa.Integer()" if f.type == "integer" else "sa.BigInteger()"), "int", c
    if isinstance(f, DecimalField):
        c["max_digits"] = repr(f.precision)
        c["decimal_places"] = repr(f.scale)
        if f.min is not None:
            c["ge"] = f"Decimal({str(f.min)!r})"
        if f.max is not None:
            c["le"] = f"Decimal({str(f.max)!r})"
        c["allow_inf_nan"] = "False"
        return f"sa.Numeric({f.precision}, {f.scale})", "Decimal", c
    if isinstance(f, FloatField):
        if f.min is not None:
            c["ge"] = repr(f.min)
        if f.max is not None:
            c["le"] = repr(f.max)
        c["allow_inf_nan"] = "False"
        return "sa.Double()", "float", c  # Float is single precision on MariaDB
    if isinstance(f, EnumField):
        values = ", ".join(repr(v) for v in f.values)
        width = max((len(v) for v in f.values), default=1)
        return f"sa.String({width})", f"Literal[{values}]", c
    if isinstance(f, EnumListField):
        values = ", ".join(repr(v) for v in f.values)
        return "sa.JSON()", f"list[Literal[{values}]]", c
    simple = {
        "email": ("sa.String(320)", "EmailStr"),
        "url": ("sa.String(2048)", "HttpUrl"),
        "boolean": ("sa.Boolean()", "bool"),
        "date": ("sa.Date()", "dt.date"),
        "datetime": ("UTCDateTime()", "dt.datetime"),
        "uuid": ("sa.Uuid()", "uuid.UUID"),
        "json": ("sa.JSON()", "Any"),
    }
    sa_type, py_type = simple[f.type]
    if f.type == "url":
        c["max_length"] = "2048"
    return sa_type, py_type, c


def _id_test_value(kind: str) -> str:
    return "str(uuid.uuid4())" if kind == "uuid" else "n"


def _example_id(kind: str) -> Any:
    return "0190d9a4-8f7e-7c3a-9b1e-3f6a2c4d5e6f" if kind == "uuid" else 1


def _example(f: FieldSpec, name: str) -> Any:
    """A plausible value for docs and generated tests (deterministic)."""
    if getattr(f, "default", None) is not None:
        return _jsonable(_plain_default(f))
    if isinstance(f, StringField):
        if f.pattern is not None:
            return None  # cannot invent a value for an arbitrary pattern
        text = f"{name.replace('_', ' ')} example"
        text = text[: f.max_length]
        if f.min_length and len(text) < f.min_length:
            text = text.ljust(f.min_length, "x")
        return text
    if isinstance(f, TextField):
        return f"Some {name.replace('_', ' ')}."[: f.max_length or None]
    if isinstance(f, IntegerField):
        return _clamp(1, f.min, f.max)
    if isinstance(f, DecimalField):
        low = f.min if f.min is not None else Decimal("0")
        value = max(low, Decimal("9.99")) if f.max is None else min(f.max, max(low, Decimal(1)))
        return str(value.quantize(Decimal(1).scaleb(-f.scale)))
    if isinstance(f, FloatField):
        return _clamp(1.5, f.min, f.max)
    if isinstance(f, (EnumField, EnumListField)):
        return f.values[0] if isinstance(f, EnumField) else f.values[:1]
    samples: dict[str, Any] = {
        "email": "someone@example.com",
        "url": "https://example.com/",
        "boolean": True,
        "date": dt.date(2026, 1, 15).isoformat(),
        "datetime": "2026-01-15T10:30:00Z",
        "uuid": str(uuid.UUID(int=0x0190D9A48F7E7C3A9B1E3F6A2C4D5E6F)),
        "json": {"key": "value"},
    }
    return samples[f.type]


def _clamp(value: Any, low: Any, high: Any) -> Any:
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


__all__ = [
    "ColumnPlan",
    "EntityPlan",
    "LinkPlan",
    "ProjectPlan",
    "ServicePlan",
    "build_plan",
]
