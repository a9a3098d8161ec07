"""What the identity endpoints need to know from the spec's ``auth`` section."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from ...types import utcnow


@dataclass(frozen=True)
class IdentityConfig:
    """Settings of the identity endpoints (rendered by the generator from ``auth``).

    ``user_create_model`` is the user entity's create schema (``UserCreate``): signup
    accepts its fields plus ``password``. ``clock`` exists so tests can move time
    instead of sleeping; services keep the default.
    """

    user_create_model: type[BaseModel]
    roles: frozenset[str]
    admin_roles: frozenset[str] = frozenset({"admin"})
    user_entity: str = "User"
    signup: bool = True
    signup_roles: frozenset[str] = frozenset()
    # User-entity fields an anonymous caller may not write (their `access.write` rule):
    # signup answers 403 naming the field, as the entity's own routes would.
    signup_forbidden_fields: frozenset[str] = frozenset()
    tenancy: bool = False
    access_ttl: int = 900
    refresh_ttl: int = 1_209_600
    login_throttle_attempts: int = 5
    login_throttle_window: int = 900
    # One client address may fail this many times the per-e-mail limit: a NAT or an office
    # shares an address, while a password sprayer tries many e-mails from one.
    ip_throttle_factor: int = 10
    # How many proxies in front of the service append to X-Forwarded-For (the gateway is
    # one). 0 trusts no header: the socket peer is the client address.
    trusted_proxy_hops: int = 0
    clock: Callable[[], dt.datetime] = field(default=utcnow, compare=False)

    def __post_init__(self) -> None:
        unknown = (self.admin_roles | self.signup_roles) - self.roles
        if unknown:
            raise ValueError(f"roles not in the known roles: {', '.join(sorted(unknown))}")
        if not self.admin_roles:
            raise ValueError("admin_roles may not be empty: nobody could manage users")
        if min(self.access_ttl, self.refresh_ttl) < 1:
            raise ValueError("token lifetimes must be positive")
        if self.login_throttle_attempts < 1 or self.login_throttle_window < 1:
            raise ValueError("login_throttle_attempts and login_throttle_window must be positive")
        if self.ip_throttle_factor < 1 or self.trusted_proxy_hops < 0:
            raise ValueError("ip_throttle_factor must be positive, trusted_proxy_hops >= 0")
