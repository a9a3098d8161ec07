"""What a generated route calls before and after touching the database.

A Guard binds one entity's policy to the service's repositories, so the checks that span
entities (a relation or link must point at a row the caller can see) stay out of the
generated code too. Every decision itself is the policy's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from ..jsonio import Payload
from ..repository import Repository
from .anonymous import anonymous
from .policy import EntityPolicy, RowScope
from .principal import Principal

Row = dict[str, Any]


class Guard:
    def __init__(self, name: str, guards: Guards) -> None:
        self.name = name
        self.policy: EntityPolicy = guards.policies[name]
        self._guards = guards
        resource = guards.repos[name].resource
        self._searchable = tuple(c.name for c in resource.search_columns)

    def allowed(self, action: str) -> Callable[..., Awaitable[Principal]]:
        """A dependency giving the caller once allowed to do ``action``.

        Routes with a body use it: FastAPI runs dependencies before it validates the body,
        so an anonymous or role-less caller gets 401/403, not a 422 about the schema.
        """
        policy = self.policy
        authenticate = self._guards.authenticate

        # A default, not Annotated: this module's annotations are strings, and FastAPI
        # could not resolve the local `authenticate` from one.
        async def allowed_caller(caller: Principal = Depends(authenticate)) -> Principal:
            policy.authorize(caller, action)
            return caller

        return allowed_caller

    async def caller(self, request: HTTPConnection) -> Principal:
        """Who is calling, exactly as the routes' `Caller` dependency says."""
        return await self._guards.authenticate(request)

    def scope(self, caller: Principal, action: str) -> RowScope:
        """401/403 unless the caller may do ``action``; else the rows they may do it to."""
        return self.policy.authorize(caller, action)

    def list_scope(self, caller: Principal, params: Mapping[str, str]) -> RowScope:
        scope = self.policy.authorize(caller, "list")
        # Filtering or sorting by a hidden field would reveal its values one query at a time.
        self.policy.check_query(caller, params, self._searchable)
        return scope

    async def create(self, caller: Principal, data: Row, sent: Iterable[str]) -> Row:
        """The row to insert: checked field by field, with owner and tenant filled in."""
        self.policy.authorize(caller, "create")
        self.policy.check_write(caller, sent)
        stamped = self.policy.stamp(caller, data)
        await self._check_relations(caller, stamped)
        return stamped

    async def update(self, caller: Principal, changes: Row) -> RowScope:
        """The rows the caller may change, once the changes themselves are allowed."""
        scope = self.policy.authorize(caller, "update")
        self.policy.check_write(caller, changes)
        self.policy.check_owner_change(caller, changes)
        await self._check_relations(caller, changes)
        return scope

    def redact(self, caller: Principal, row: Row) -> Row:
        return self.policy.redact(caller, row)

    def redact_page(self, caller: Principal, page: dict[str, Any]) -> dict[str, Any]:
        return self.policy.redact_page(caller, page)

    def shown(self, caller: Principal, payload: Payload) -> Payload:
        """A row's response body as ``caller`` may see it (the same bytes if nothing is
        hidden from them: a cached body leaves without being decoded)."""
        if not self.policy.hidden_fields(caller):
            return payload
        # Still tagged with the row's version: If-Match works for every caller.
        return Payload.row(self.policy.redact(caller, payload.data()))

    def shown_page(self, caller: Principal, payload: Payload) -> Payload:
        if not self.policy.hidden_fields(caller):
            return payload
        return Payload.of(self.policy.redact_page(caller, payload.data()))

    def target_scope(self, caller: Principal, target: str) -> RowScope:
        """Rows of a link's target the caller can see: a link never reveals more."""
        return self._guards.policies[target].row_scope(caller)

    async def _check_relations(self, caller: Principal, data: Mapping[str, Any]) -> None:
        if self.policy.relation_targets:
            await self.policy.check_relations(
                caller, data, self._guards.policies, self._guards.repos
            )


class Guards(dict[str, Guard]):
    """The guard of every entity of a service, by entity name."""

    def __init__(
        self,
        policies: Mapping[str, EntityPolicy],
        repos: Mapping[str, Repository],
        authenticate: Callable[..., Awaitable[Principal]] = anonymous,
    ) -> None:
        super().__init__()
        self.policies = dict(policies)
        self.repos = repos
        self.authenticate = authenticate
        for name in self.policies:
            self[name] = Guard(name, self)
