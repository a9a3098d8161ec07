"""The auth section and access rules of the spec, resolved for the templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from microforge.runtime.auth.wiring import project_audience, project_issuer
from microforge.spec.model import Auth, Entity, FieldSpec, RelationField, Spec
from microforge.spec.naming import pluralize, snake
from microforge.spec.validate_auth import ACTIONS

from .types import python_input_type


@dataclass
class AuthPlan:
    """Project-wide identity settings, the same for every service."""

    identity_service: str
    user_entity: str
    user_table: str
    roles: list[str]
    admin_roles: list[str]
    signup: bool
    signup_roles: list[str]
    tenancy: bool
    access_token_ttl: int
    refresh_token_ttl: int
    throttle_attempts: int
    throttle_window: int
    issuer: str
    audience: str
    # User fields a new account may not set at signup: their write rule leaves out the
    # signup roles (signup is not a back door around field rules).
    signup_forbidden: list[str] = field(default_factory=list)


@dataclass
class FieldRulePlan:
    column: str
    read: list[str] | None
    write: list[str] | None


@dataclass
class AccessPlan:
    """One entity's rules; rendered as an EntityPolicy in generated resources.py."""

    actions: dict[str, str | list[str]]  # "public" | "authenticated" | roles
    own: str | None = None  # the owner column
    where: dict[str, list[Any]] = field(default_factory=dict)  # column -> allowed values
    all_rows: list[str] = field(default_factory=list)
    tenant: bool = False
    fields: list[FieldRulePlan] = field(default_factory=list)
    # relation column -> target entity, for targets whose rows are scoped per caller
    relation_targets: dict[str, str] = field(default_factory=dict)

    @property
    def scoped(self) -> bool:
        return bool(self.own or self.where or self.tenant)

    def rule(self, action: str) -> str | list[str]:
        return self.actions[action]

    def needs_token(self, action: str) -> bool:
        return self.actions[action] != "public"

    def needs_role(self, action: str) -> bool:
        return isinstance(self.actions[action], list)


def auth_plan(spec: Spec) -> AuthPlan | None:
    auth: Auth | None = spec.auth
    if auth is None:
        return None
    user = spec.services[auth.service].entities[auth.user_entity]
    return AuthPlan(
        identity_service=auth.service,
        user_entity=auth.user_entity,
        user_table=user.plural or pluralize(snake(auth.user_entity)),
        roles=list(auth.roles),
        admin_roles=list(auth.admin_roles),
        signup=auth.signup,
        signup_roles=list(auth.signup_roles),
        tenancy=auth.tenancy,
        access_token_ttl=auth.access_token_ttl,
        refresh_token_ttl=auth.refresh_token_ttl,
        throttle_attempts=auth.login_throttle.attempts,
        throttle_window=auth.login_throttle.window,
        issuer=project_issuer(spec.name),
        audience=project_audience(spec.name),
        signup_forbidden=[
            f"{name}_id" if isinstance(f, RelationField) else name
            for name, f in user.fields.items()
            if f.access is not None
            and f.access.write is not None
            and not set(f.access.write) & set(auth.signup_roles)
        ],
    )


def access_plan(auth: AuthPlan, entities: dict[str, Entity], name: str) -> AccessPlan:
    entity = entities[name]
    access = entity.access
    admin: list[str] = list(auth.admin_roles)

    def resolve(rule: Any, fallback: str | list[str]) -> str | list[str]:
        return fallback if rule is None else (list(rule) if isinstance(rule, list) else rule)

    if access is None:
        actions: dict[str, str | list[str]] = dict.fromkeys(ACTIONS, admin)
        plan = AccessPlan(actions=actions)
    else:
        read = resolve(access.read, admin)
        actions = {
            "create": resolve(access.create, admin),
            "read": read,
            "list": resolve(access.list, read),
            "update": resolve(access.update, admin),
            "delete": resolve(access.delete, admin),
        }
        plan = AccessPlan(
            actions=actions,
            own=_owner_column(entity, access.own),
            where={
                column: [
                    _as_stored(entity.fields[column], item)
                    for item in (value if isinstance(value, list) else [value])
                ]
                for column, value in access.where.items()
            },
            all_rows=list(access.all_rows),
            tenant=access.tenant,
        )
    for field_name, spec_field in entity.fields.items():
        if spec_field.access is None:
            continue
        if isinstance(spec_field, RelationField) and spec_field.cardinality == "many_to_many":
            continue
        column = f"{field_name}_id" if isinstance(spec_field, RelationField) else field_name
        readers = spec_field.access.read
        writers = spec_field.access.write
        plan.fields.append(
            FieldRulePlan(
                column,
                None if readers is None else list(readers),
                None if writers is None else list(writers),
            )
        )
    for field_name, spec_field in entity.fields.items():
        if isinstance(spec_field, RelationField) and spec_field.cardinality != "many_to_many":
            target = entities[spec_field.to].access
            if target is not None and (target.own or target.where or target.tenant):
                plan.relation_targets[f"{field_name}_id"] = spec_field.to
    return plan


def _as_stored(spec_field: FieldSpec, value: Any) -> Any:
    """A `where` value as the column's Python type (Decimal, date, UUID, ...): the value
    is bound as a query parameter, and drivers are strict about types."""
    return TypeAdapter(python_input_type(spec_field)).validate_python(value)


def _owner_column(entity: Entity, own: str | None) -> str | None:
    if own is None or own == "id":
        return own
    spec_field = entity.fields[own]
    return f"{own}_id" if isinstance(spec_field, RelationField) else own
