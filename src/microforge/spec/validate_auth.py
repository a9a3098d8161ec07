"""Rules for the `auth` section and the `access` rules of entities and fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from microforge.runtime.auth.policy import TENANT_COLUMN

from .errors import Path, suggest
from .model import (
    Auth,
    EmailField,
    Entity,
    EntityAccess,
    EnumListField,
    FieldSpec,
    JsonField,
    ReferenceField,
    RelationField,
    Spec,
)
from .naming import pluralize, snake

Err = Callable[..., None]
ACTIONS = ("create", "read", "list", "update", "delete")
# Tables and routes the identity service adds next to the spec's own entities.
IDENTITY_TABLES = frozenset(
    {"auth_credentials", "auth_refresh_tokens", "auth_api_keys", "auth_login_attempts"}
)

CheckValue = Callable[[FieldSpec, Any, Path, str, Err], None]


def validate_auth(spec: Spec, err: Err, check_value: CheckValue) -> None:
    auth = spec.auth
    if auth is None:
        for service_name, service in spec.services.items():
            if service.client_roles:
                err(
                    ("services", service_name, "client_roles"),
                    "client roles need a top-level `auth` section",
                )
            for entity_name, entity in service.entities.items():
                epath: Path = ("services", service_name, "entities", entity_name)
                if entity.access is not None:
                    err((*epath, "access"), "access rules need a top-level `auth` section")
                for field_name, field in entity.fields.items():
                    if field.access is not None:
                        err(
                            (*epath, "fields", field_name, "access"),
                            "access rules need a top-level `auth` section",
                        )
        return
    roles = _check_auth_section(spec, auth, err)
    for service_name, service in spec.services.items():
        _check_roles(service.client_roles, roles, ("services", service_name, "client_roles"), err)
        for entity_name, entity in service.entities.items():
            epath = ("services", service_name, "entities", entity_name)
            plural = entity.plural or pluralize(snake(entity_name))
            if service_name == auth.service and plural in IDENTITY_TABLES | {"auth"}:
                err(epath, f"the table '{plural}' is used by the identity service", key=True)
            for field_name, field in entity.fields.items():
                if field.access is not None:
                    fpath: Path = (*epath, "fields", field_name, "access")
                    for rule in ("read", "write"):
                        _check_roles(getattr(field.access, rule), roles, (*fpath, rule), err)
                    if _is_link(field):
                        err(
                            fpath,
                            "many_to_many links follow the entity's update rule; "
                            "field access rules do not apply to them",
                        )
                    if (
                        field.access.write == []
                        and field.required
                        and getattr(field, "default", None) is None
                        and not _is_link(field)
                        and not _is_owner(entity, field_name)
                    ):
                        err(
                            (*fpath, "write"),
                            "nobody may write this required field without a default, so no "
                            "row could be created; add a default or allow a role",
                        )
            if entity.access is not None:
                _check_access(
                    spec, auth, service_name, entity_name, entity, roles, err, check_value
                )


def _is_link(field: FieldSpec) -> bool:
    # many_to_many has no column: `required` means nothing for it.
    return isinstance(field, RelationField) and field.cardinality == "many_to_many"


def _is_owner(entity: Entity, field_name: str) -> bool:
    return entity.access is not None and entity.access.own == field_name


def _check_auth_section(spec: Spec, auth: Auth, err: Err) -> set[str]:
    path: Path = ("auth",)
    roles = set(auth.roles)
    if not auth.roles:
        err((*path, "roles"), "expected at least one role")
    for index, role in enumerate(auth.roles):
        if auth.roles.index(role) != index:
            err((*path, "roles", index), f"role '{role}' is listed twice")
    if not auth.admin_roles:
        err((*path, "admin_roles"), "expected at least one admin role")
    _check_roles(auth.admin_roles, roles, (*path, "admin_roles"), err)
    _check_roles(auth.signup_roles, roles, (*path, "signup_roles"), err)
    for index, role in enumerate(auth.signup_roles):
        if role in auth.admin_roles:
            err(
                (*path, "signup_roles", index),
                f"'{role}' is an admin role: anyone who signs up would be an admin "
                "(create admins with `microforge users create`)",
            )
    if auth.access_token_ttl >= auth.refresh_token_ttl:
        err(
            (*path, "access_token_ttl"),
            "an access token must expire before the refresh token that renews it",
        )
    if auth.service not in spec.services:
        err(
            (*path, "service"),
            f"unknown service '{auth.service}'{suggest(auth.service, list(spec.services))} "
            f"(services: {', '.join(spec.services)})",
        )
        return roles
    entities = spec.services[auth.service].entities
    user = entities.get(auth.user_entity)
    if user is None:
        err(
            (*path, "user_entity"),
            f"service '{auth.service}' has no entity '{auth.user_entity}'"
            f"{suggest(auth.user_entity, list(entities))} (entities: {', '.join(entities)})",
        )
        return roles
    if user.id != "uuid":
        err((*path, "user_entity"), f"'{auth.user_entity}' must use uuid ids (tokens carry them)")
    email = user.fields.get("email")
    if not isinstance(email, EmailField) or not email.unique or not email.required:
        err(
            (*path, "user_entity"),
            f"'{auth.user_entity}' needs a field `email: {{type: email, unique: true}}` "
            "(the login name)",
        )
    if user.soft_delete:
        err((*path, "user_entity"), f"'{auth.user_entity}' cannot use soft_delete")
    return roles


def _check_roles(rule: Any, roles: set[str], path: Path, err: Err) -> None:
    if not isinstance(rule, list):
        return
    for index, role in enumerate(rule):
        if role not in roles:
            err(
                (*path, index),
                f"unknown role '{role}'{suggest(role, sorted(roles))} "
                f"(roles: {', '.join(sorted(roles))})",
            )


def _check_access(
    spec: Spec,
    auth: Auth,
    service_name: str,
    entity_name: str,
    entity: Entity,
    roles: set[str],
    err: Err,
    check_value: CheckValue,
) -> None:
    access = entity.access
    assert access is not None
    apath: Path = ("services", service_name, "entities", entity_name, "access")
    for action in ACTIONS:
        _check_roles(getattr(access, action), roles, (*apath, action), err)
    _check_roles(access.all_rows, roles, (*apath, "all_rows"), err)
    if access.own is not None:
        _check_owner(auth, service_name, entity_name, entity, access, apath, err)
    for name, value in access.where.items():
        wpath: Path = (*apath, "where", name)
        field = entity.fields.get(name)
        if field is None:
            err(wpath, f"unknown field '{name}'{suggest(name, list(entity.fields))}", key=True)
        elif isinstance(field, RelationField | JsonField | EnumListField):
            err(wpath, f"'{name}' is a {field.type} field; `where` compares plain values")
        else:
            for index, item in enumerate(value if isinstance(value, list) else [value]):
                item_path = (*wpath, index) if isinstance(value, list) else wpath
                check_value(field, item, item_path, "value", err)
    if access.where and not access.all_rows:
        err(
            (*apath, "where"),
            "`where` hides rows from everyone: name the roles that see all rows in all_rows",
        )
    if access.tenant:
        if not auth.tenancy:
            err((*apath, "tenant"), "tenant scoping needs `auth.tenancy: true`")
        if entity.seed:
            err(
                (*apath, "tenant"),
                "tenant-scoped rows belong to a tenant, which seed rows cannot name; "
                "remove the seed rows or the tenant scope",
            )
        for name, field in entity.fields.items():
            # A to-one relation `tenant` is stored in the column `tenant_id` too.
            to_one = isinstance(field, RelationField) and not _is_link(field)
            if name == TENANT_COLUMN:
                err((*apath, "tenant"), f"the field '{TENANT_COLUMN}' is added by tenant scoping")
            elif to_one and f"{name}_id" == TENANT_COLUMN:
                err(
                    (*apath, "tenant"),
                    f"the relation '{name}' is stored in the column '{TENANT_COLUMN}', which "
                    "tenant scoping adds; rename the field",
                )


def _check_owner(
    auth: Auth,
    service_name: str,
    entity_name: str,
    entity: Entity,
    access: EntityAccess,
    apath: Path,
    err: Err,
) -> None:
    own = access.own
    assert own is not None
    path: Path = (*apath, "own")
    user_ref = f"{auth.service}.{auth.user_entity}"
    in_identity = service_name == auth.service
    field = entity.fields.get(own)
    if own == "id":
        if not (in_identity and entity_name == auth.user_entity):
            err(path, "`own: id` is only for the user entity itself")
    elif field is None:
        err(path, f"unknown field '{own}'{suggest(own, list(entity.fields))}")
    elif isinstance(field, ReferenceField):
        if field.to != user_ref:
            err(path, f"'{own}' must hold a user id: a reference to {user_ref}")
    elif isinstance(field, RelationField):
        if not in_identity or field.to != auth.user_entity or field.cardinality == "many_to_many":
            err(path, f"'{own}' must hold a user id: a reference to {user_ref}")
    else:
        err(path, f"'{own}' must hold a user id: a reference to {user_ref}")
    public = [a for a in ACTIONS if getattr(access, a) == "public"]
    if public:
        err(
            (*apath, public[0]),
            "an owned entity cannot be public: anonymous callers own no rows "
            "(use `authenticated` or roles)",
        )
