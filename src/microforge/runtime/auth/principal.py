"""Who is calling: the result of authentication, the input of every policy decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PrincipalKind = Literal["user", "client", "anonymous"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller, or the anonymous one.

    ``subject`` is the user id (as text) for users, ``apikey:<id>`` for machine clients.
    ``tenant`` is the tenant claim of the token, when the project uses tenancy.
    """

    subject: str
    kind: PrincipalKind
    roles: frozenset[str] = field(default_factory=frozenset)
    tenant: str | None = None
    token_id: str | None = None
    expires_at: float | None = None  # POSIX seconds; None for anonymous

    @property
    def authenticated(self) -> bool:
        return self.kind != "anonymous"

    def has_any(self, roles: frozenset[str]) -> bool:
        return not self.roles.isdisjoint(roles)


ANONYMOUS = Principal(subject="", kind="anonymous")
