"""The one place that decides what a caller may do to an entity's rows and fields.

Generated ``resources.py`` builds one :class:`EntityPolicy` per entity from the spec's
``access`` section; generated routes ask it before and after touching the repository:

* :meth:`EntityPolicy.authorize` -- may the caller run the action at all (401/403), and on
  which rows (a :class:`RowScope` the repository ANDs into every statement);
* :meth:`EntityPolicy.check_write`, :meth:`~EntityPolicy.stamp`,
  :meth:`~EntityPolicy.check_owner_change` and :meth:`~EntityPolicy.check_relations` --
  what a create or update may set;
* :meth:`EntityPolicy.redact` / :meth:`~EntityPolicy.redact_page` -- which fields a
  response may show.

Everything that depends only on the spec is computed once in the constructor, and scopes
are cached per (subject, tenant), so a decision for a principal the token cache already
holds is a few dictionary and set operations.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..problems import Problem
from ..query import RESERVED
from .principal import Principal

ACTIONS = frozenset({"create", "read", "list", "update", "delete"})
TENANT_COLUMN = "tenant_id"
OWN_TYPES = (uuid.UUID, int, str)

RuleKind = Literal["public", "authenticated", "roles"]

# Caches keyed by callers are bounded by dropping everything when full: simpler than an
# LRU, and refilling costs one scope construction per active caller.
_CACHE_LIMIT = 4096
_INT_SUBJECT = re.compile(r"-?[0-9]{1,19}")
_INT64 = (-(2**63), 2**63 - 1)


# --- row scopes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowScope:
    """Which rows a caller reaches: equality and IN conditions on columns, ANDed.

    ``RowScope()`` reaches every row; ``empty=True`` reaches none, which the repository
    answers without asking the database. ``shape`` names the columns (and the length of
    each IN list) but not the values, so statements can be compiled once per shape and
    the values bound as parameters; ``values`` lists the values in the same order.
    """

    equals: tuple[tuple[str, Any], ...] = ()
    any_of: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    empty: bool = False
    shape: Hashable = field(init=False, repr=False, compare=False)
    values: tuple[Any, ...] = field(init=False, repr=False, compare=False)
    unrestricted: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # An IN list without values matches nothing; say so once instead of asking SQL.
        empty = self.empty or any(not values for _, values in self.any_of)
        object.__setattr__(self, "empty", empty)
        object.__setattr__(
            self,
            "shape",
            (
                tuple(name for name, _ in self.equals),
                tuple((name, len(values)) for name, values in self.any_of),
            ),
        )
        flat = [value for _, value in self.equals]
        for _, values in self.any_of:
            flat.extend(values)
        object.__setattr__(self, "values", tuple(flat))
        object.__setattr__(self, "unrestricted", not (empty or self.equals or self.any_of))


ALL_ROWS = RowScope()
NO_ROWS = RowScope(empty=True)


# --- rules ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may run an action: anyone, any authenticated caller, or holders of a role.

    ``Rule.roles()`` without names lets nobody in (the spec's empty role list).
    """

    kind: RuleKind
    allowed: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.kind not in ("public", "authenticated", "roles"):
            raise ValueError(f"unknown rule kind {self.kind!r}")
        if self.allowed and self.kind != "roles":
            raise ValueError(f"a {self.kind} rule takes no roles")

    @classmethod
    def public(cls) -> Rule:
        return cls("public")

    @classmethod
    def authenticated(cls) -> Rule:
        return cls("authenticated")

    @classmethod
    def roles(cls, *names: str) -> Rule:
        return cls("roles", frozenset(names))


@dataclass(frozen=True, slots=True)
class FieldRule:
    """Roles that may read / write one field; None = no restriction, empty = nobody."""

    read: frozenset[str] | None = None
    write: frozenset[str] | None = None


class VisibleRows(Protocol):
    """What :meth:`EntityPolicy.check_relations` needs of a repository."""

    async def visible(self, id: Any, scope: RowScope | None = None) -> bool: ...


# --- problems ---------------------------------------------------------------------------


def unauthenticated(detail: str, **extra: Any) -> Problem:
    # RFC 6750: a 401 names the scheme the client should use.
    return Problem(
        401,
        detail,
        type="urn:microforge:problem:unauthenticated",
        headers={"WWW-Authenticate": "Bearer"},
        **extra,
    )


def forbidden(detail: str, **extra: Any) -> Problem:
    return Problem(403, detail, type="urn:microforge:problem:forbidden", **extra)


def parse_subject(own_type: type, subject: str) -> Any | None:
    """``subject`` as a value of the owner column's type, or None when it is not one.

    Strict on purpose: ``int`` accepts no spaces, underscores or signs beyond '-', so a
    subject matches exactly one owner value.
    """
    if not subject:
        return None
    if own_type is uuid.UUID:
        try:
            return uuid.UUID(subject)
        except ValueError:
            return None
    if own_type is int:
        if not _INT_SUBJECT.fullmatch(subject):
            return None
        number = int(subject)
        return number if _INT64[0] <= number <= _INT64[1] else None
    return subject


def _same_id(given: Any, mine: Any) -> bool:
    # A value from a request body may arrive as text for a typed column.
    return mine is not None and (given == mine or str(given) == str(mine))


# --- the policy -------------------------------------------------------------------------


class EntityPolicy:
    """What callers may do with one entity; see the module docstring for the flow.

    ``actions`` maps create/read/update/delete (and optionally list, which defaults to
    read) to a :class:`Rule`. ``own`` is the owner *column* (``customer_id`` for a
    relation, ``id`` for the user entity itself) compared with the caller's subject
    parsed as ``own_type``; ``where`` maps columns to a value or a tuple of allowed
    values; ``all_rows`` roles are exempt from ``own`` and ``where`` but never from
    ``tenant``, which limits every caller to rows whose ``tenant_id`` is their tenant
    claim. ``fields`` holds per-field read/write rules; ``relation_targets`` maps
    relation columns to the entity they point at (for :meth:`check_relations`).
    Columns and values are the table's: the values must have the column's Python type.
    """

    __slots__ = (
        "_all_rows",
        "_hidden",
        "_own",
        "_own_type",
        "_per_caller",
        "_read_rules",
        "_relation_targets",
        "_rules",
        "_scopes",
        "_static",
        "_tenant",
        "_where_any_of",
        "_where_equals",
        "_write_rules",
        "entity",
    )

    def __init__(
        self,
        entity: str,
        actions: Mapping[str, Rule],
        *,
        own: str | None = None,
        own_type: type = uuid.UUID,
        where: Mapping[str, Any] | None = None,
        all_rows: Iterable[str] = (),
        tenant: bool = False,
        fields: Mapping[str, FieldRule] | None = None,
        relation_targets: Mapping[str, str] | None = None,
    ) -> None:
        unknown = set(actions) - ACTIONS
        if unknown:
            raise ValueError(f"{entity}: unknown actions {sorted(unknown)}")
        missing = ACTIONS - {"list"} - set(actions)
        if missing:
            raise ValueError(f"{entity}: no rule for {sorted(missing)}")
        if own_type not in OWN_TYPES:
            raise ValueError(f"{entity}: own_type must be uuid.UUID, int or str")
        self.entity = entity
        self._rules: dict[str, Rule] = {**actions}
        self._rules.setdefault("list", actions["read"])
        self._own = own
        self._own_type = own_type
        self._tenant = tenant
        self._all_rows = frozenset(all_rows)
        self._where_equals: tuple[tuple[str, Any], ...] = ()
        self._where_any_of: tuple[tuple[str, tuple[Any, ...]], ...] = ()
        for column, allowed in (where or {}).items():
            if allowed is None:  # `= NULL` is never true: say so now, not as empty lists
                raise ValueError(f"{entity}: where {column!r} needs a value, not None")
            if isinstance(allowed, list | tuple | set | frozenset):
                values = tuple(allowed)
                if len(values) == 1:
                    self._where_equals += ((column, values[0]),)
                else:  # an empty list is kept: it makes the scope empty
                    self._where_any_of += ((column, values),)
            else:
                self._where_equals += ((column, allowed),)
        # Without own and tenant no scope depends on who calls: the where-only scope is
        # built once; otherwise scopes are built per caller and cached.
        self._per_caller = own is not None or tenant
        self._static = RowScope(self._where_equals, self._where_any_of)
        self._scopes: dict[tuple[str, str | None, bool], RowScope] = {}
        rules = fields or {}
        self._read_rules = tuple(
            (name, rule.read) for name, rule in rules.items() if rule.read is not None
        )
        self._write_rules = {
            name: rule.write for name, rule in rules.items() if rule.write is not None
        }
        self._hidden: dict[frozenset[str], frozenset[str]] = {}
        self._relation_targets = dict(relation_targets or {})

    @classmethod
    def open(cls, entity: str = "") -> EntityPolicy:
        """Everything public, every row: for projects without an ``auth`` section."""
        public = Rule.public()
        return cls(entity, dict.fromkeys(ACTIONS, public))

    # Introspection for generated code and docs -----------------------------------------

    def rule(self, action: str) -> Rule:
        return self._rules[action]

    @property
    def own(self) -> str | None:
        return self._own

    @property
    def tenant(self) -> bool:
        return self._tenant

    @property
    def scoped(self) -> bool:
        """Whether some caller may be limited to some rows (own, where or tenant)."""
        return self._per_caller or not self._static.unrestricted

    @property
    def relation_targets(self) -> Mapping[str, str]:
        return self._relation_targets

    # Actions and rows ------------------------------------------------------------------

    def authorize(self, caller: Principal, action: str) -> RowScope:
        """The rows ``caller`` may ``action``; 401 anonymous / 403 without a needed role."""
        rule = self._rules[action]
        if rule.kind != "public":
            if not caller.authenticated:
                raise unauthenticated("Authentication is required.")
            if rule.kind == "roles" and caller.roles.isdisjoint(rule.allowed):
                raise forbidden(f"You may not {action} {self.entity} rows.")
        if self._tenant and caller.tenant is None:
            if not caller.authenticated:
                raise unauthenticated("Authentication is required.")
            raise forbidden("Your credentials carry no tenant.")
        return self.row_scope(caller)

    def row_scope(self, caller: Principal) -> RowScope:
        """The rows ``caller`` can see, whatever the action rules say; never raises.

        Used for the targets of relations and links: a row the caller cannot see is
        reported like a missing one. A caller without the tenant claim sees nothing.
        """
        if not self._per_caller:
            if self._static.unrestricted or not caller.roles.isdisjoint(self._all_rows):
                return ALL_ROWS
            return self._static
        bypass = not caller.roles.isdisjoint(self._all_rows)
        key = (caller.subject, caller.tenant, bypass)
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._build_scope(caller, bypass)
            if len(self._scopes) >= _CACHE_LIMIT:
                self._scopes.clear()
            self._scopes[key] = scope
        return scope

    def _build_scope(self, caller: Principal, bypass: bool) -> RowScope:
        equals: list[tuple[str, Any]] = []
        if self._tenant:
            if caller.tenant is None:
                return NO_ROWS
            equals.append((TENANT_COLUMN, caller.tenant))
        if bypass:
            return RowScope(tuple(equals)) if equals else ALL_ROWS
        if self._own is not None:
            mine = parse_subject(self._own_type, caller.subject)
            if mine is None:  # anonymous, a machine client, or a foreign id scheme
                return NO_ROWS
            equals.append((self._own, mine))
        equals.extend(self._where_equals)
        return RowScope(tuple(equals), self._where_any_of)

    def _bypasses(self, caller: Principal) -> bool:
        return not caller.roles.isdisjoint(self._all_rows)

    # Writes ----------------------------------------------------------------------------

    def check_write(self, caller: Principal, fields: Iterable[str]) -> None:
        """403 (401 when anonymous) naming the first field ``caller`` may not set."""
        rules = self._write_rules
        if not rules:
            return
        for name in fields:
            allowed = rules.get(name)
            if allowed is not None and caller.roles.isdisjoint(allowed):
                if not caller.authenticated:
                    raise unauthenticated(
                        f"Authentication is required to set '{name}'.", field=name
                    )
                raise forbidden(f"You may not set '{name}'.", field=name)

    def stamp(self, caller: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` for a create with the owner and tenant filled in from ``caller``.

        A caller subject to ``own`` who names another owner gets 403; one exempt from it
        may name anyone, and an omitted owner defaults to the caller either way.
        """
        stamped = dict(data)
        if self._tenant:
            if caller.tenant is None:
                if not caller.authenticated:
                    raise unauthenticated("Authentication is required.")
                raise forbidden("Your credentials carry no tenant.")
            stamped[TENANT_COLUMN] = caller.tenant
        own = self._own
        if own is None or own == "id":  # the user entity owns itself: nothing to stamp
            return stamped
        given = stamped.get(own)
        mine = parse_subject(self._own_type, caller.subject)
        if self._bypasses(caller):
            if given is None:
                if mine is None:
                    raise Problem(422, f"'{own}' is required.", title="Missing value", field=own)
                stamped[own] = mine
            return stamped
        if mine is None:
            if not caller.authenticated:
                raise unauthenticated(
                    f"Authentication is required to create {self.entity} rows.", field=own
                )
            raise forbidden(f"Your identity cannot own {self.entity} rows.", field=own)
        if given is None:
            stamped[own] = mine
        elif not _same_id(given, mine):
            raise forbidden(f"'{own}' must be your own id.", field=own)
        return stamped

    def check_owner_change(self, caller: Principal, changes: Mapping[str, Any]) -> None:
        """403 when a caller subject to ``own`` hands a row to someone else."""
        own = self._own
        if own is None or own not in changes or self._bypasses(caller):
            return
        if not _same_id(changes[own], parse_subject(self._own_type, caller.subject)):
            raise forbidden(f"'{own}' must be your own id.", field=own)

    async def check_relations(
        self,
        caller: Principal,
        data: Mapping[str, Any],
        policies: Mapping[str, EntityPolicy],
        repos: Mapping[str, VisibleRows],
    ) -> None:
        """422 naming the field when ``data`` points at a row ``caller`` cannot see.

        Only targets whose policy scopes the caller cost a query; others are left to the
        database's foreign key (409 for a missing row, as without auth).
        """
        for name, target in self._relation_targets.items():
            value = data.get(name)
            if value is None:
                continue
            scope = policies[target].row_scope(caller)
            if scope.unrestricted:
                continue
            if not await repos[target].visible(value, scope):
                raise Problem(
                    422,
                    f"No {target} with id {value}.",
                    title="Unknown reference",
                    type="urn:microforge:problem:reference",
                    field=name,
                )

    # Reads -----------------------------------------------------------------------------

    def hidden_fields(self, caller: Principal) -> frozenset[str]:
        """The fields ``caller`` may not read (cached per role set)."""
        if not self._read_rules:
            return frozenset()
        roles = caller.roles
        hidden = self._hidden.get(roles)
        if hidden is None:
            hidden = frozenset(
                name for name, allowed in self._read_rules if roles.isdisjoint(allowed)
            )
            if len(self._hidden) >= _CACHE_LIMIT:
                self._hidden.clear()
            self._hidden[roles] = hidden
        return hidden

    def read_restricted_fields(self) -> frozenset[str]:
        """The fields with a read rule (hidden from some callers)."""
        return frozenset(name for name, _ in self._read_rules)

    def may_read(self, caller: Principal, name: str) -> bool:
        return name not in self.hidden_fields(caller)

    def redact(self, caller: Principal, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` without the fields ``caller`` may not read; ``row`` itself if none."""
        if not self._read_rules:
            return row
        hidden = self.hidden_fields(caller)
        if not hidden:
            return row
        return {name: value for name, value in row.items() if name not in hidden}

    def redact_page(self, caller: Principal, page: dict[str, Any]) -> dict[str, Any]:
        """A list page with every item redacted; ``page`` itself if nothing is hidden."""
        if not self._read_rules:
            return page
        hidden = self.hidden_fields(caller)
        if not hidden:
            return page
        items = [
            {name: value for name, value in row.items() if name not in hidden}
            for row in page["items"]
        ]
        return {**page, "items": items}

    def check_query(
        self, caller: Principal, params: Mapping[str, str], searchable: Iterable[str] = ()
    ) -> None:
        """403 naming the parameter that filters, sorts or searches on a hidden field.

        Without it, ``salary__gt=100000`` would reveal a field the response leaves out.
        """
        hidden = self.hidden_fields(caller)
        if not hidden:
            return
        for key in params:
            if key in RESERVED:
                continue
            if key.partition("__")[0] in hidden:
                raise forbidden(f"You may not filter on '{key}'.", parameter=key)
        for item in (params.get("sort") or "").split(","):
            if item.strip().lstrip("-+") in hidden:
                raise forbidden("You may not sort on a field you cannot read.", parameter="sort")
        if params.get("q") and not hidden.isdisjoint(searchable):
            raise forbidden("You may not search fields you cannot read.", parameter="q")


OPEN = EntityPolicy.open()
