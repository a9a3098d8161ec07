"""What the identity endpoints do, apart from HTTP: accounts, sessions and API keys.

Secrets (refresh tokens, API keys) are stored as SHA-256 hex digests and found by an
indexed lookup of that digest (API keys: by their public prefix, then a constant-time
comparison), so no secret is ever compared as plain text or kept at rest.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...ids import uuid7
from ...problems import Problem, integrity_problem
from ...repository import Repository
from ..passwords import hash_password, password_problem, verify_dummy, verify_password
from ..principal import Principal
from ..tokens import TokenIssuer
from .api_keys import digest, find_api_key, insert_api_key
from .config import IdentityConfig
from .tables import IdentityTables
from .throttle import LoginThrottle, ThrottleKey, email_key

log = logging.getLogger("microforge.auth.identity")

Row = dict[str, Any]

LOGIN_FAILED = "Invalid email or password."
SIGNUP_REFUSED = "Cannot sign up with these details."
REFRESH_REFUSED = "The refresh token is invalid, expired or revoked; log in again."
CLIENT_REFUSED = "Invalid client credentials."
THROTTLED = "Too many failed attempts; try again later."
BEARER = {"WWW-Authenticate": "Bearer"}


def normalize_email(email: str) -> str:
    """Login names compare case-insensitively on every database (MariaDB's collation
    already does, PostgreSQL and SQLite do not), so they are stored lower-cased."""
    return email.strip().lower()


def parse_user_id(subject: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(subject)
    except ValueError:
        return None


class IdentityService:
    def __init__(
        self,
        config: IdentityConfig,
        tables: IdentityTables,
        engine: AsyncEngine,
        issuer: TokenIssuer,
        users_repo: Repository,
    ) -> None:
        if issuer.access_ttl != config.access_ttl:
            raise ValueError(
                f"the token issuer's access_ttl ({issuer.access_ttl}) differs from "
                f"IdentityConfig.access_ttl ({config.access_ttl}); build both from one setting"
            )
        self.config = config
        self.tables = tables
        self.engine = engine
        self.issuer = issuer
        self.users_repo = users_repo
        self.throttle = LoginThrottle(
            engine,
            tables.login_attempts,
            window=config.login_throttle_window,
            clock=config.clock,
        )
        self.refresh_ttl = dt.timedelta(seconds=config.refresh_ttl)

    def now(self) -> dt.datetime:
        return self.config.clock()

    # Accounts ------------------------------------------------------------------------------

    async def signup(self, fields: Mapping[str, Any], password: str) -> Row:
        check_password(password, "password")
        data = dict(fields)
        data["email"] = normalize_email(str(data["email"]))
        tenant = str(uuid7()) if self.config.tenancy else None
        roles = sorted(self.config.signup_roles)
        # Hashed before touching the database: a taken e-mail then costs the same time.
        password_hash = await hash_password(password)
        try:
            async with self.engine.begin() as conn:
                user = await self._insert_user(conn, data, tenant)
                await insert_credentials(
                    conn, self.tables, user["id"], password_hash, roles, tenant, self.now()
                )
                refresh = await self._new_refresh_token(conn, user["id"], family_id=None)
        except IntegrityError as exc:
            problem = integrity_problem(exc)
            if problem.type.endswith("unique-violation"):
                # The same answer for a taken e-mail as for any other taken unique value.
                raise Problem(409, SIGNUP_REFUSED, title="Signup refused") from None
            raise problem from None
        return {"user": user, **self._pair(str(user["id"]), roles, tenant, refresh)}

    async def _insert_user(self, conn: AsyncConnection, data: Row, tenant: str | None) -> Row:
        now = self.now()
        row = {**data, "id": uuid7(), "created_at": now, "updated_at": now}
        if tenant is not None and "tenant_id" in self.tables.users.c:
            row["tenant_id"] = tenant
        return await self.users_repo.insert(conn, row)

    async def login(self, email: str, password: str, client_ip: str | None) -> Row:
        email = normalize_email(email)
        keys = self._throttle_keys(email, client_ip)
        await self._refuse_if_throttled(keys)
        account = await self._account(self.tables.users.c.email == email)
        if account is None:
            await verify_dummy(password)
            valid, new_hash = False, None
        else:
            valid, new_hash = await verify_password(password, account["password_hash"])
        if account is None or not valid or account["disabled"]:
            await self.throttle.record_failure(keys)
            raise Problem(401, LOGIN_FAILED, title="Login failed", headers=BEARER)
        await self.throttle.clear(keys[0])
        creds = self.tables.credentials
        async with self.engine.begin() as conn:
            if new_hash is not None:
                # The hashing parameters were raised since this hash was made.
                await conn.execute(
                    sa.update(creds)
                    .where(creds.c.user_id == account["user_id"])
                    .values(password_hash=new_hash)
                )
            refresh = await self._new_refresh_token(conn, account["user_id"], family_id=None)
        return self._pair(str(account["user_id"]), account["roles"], account["tenant_id"], refresh)

    async def change_password(self, caller: Principal, current: str, new: str) -> None:
        user_id = self._user_id(caller)
        check_password(new, "new_password")
        account = await self._account(self.tables.credentials.c.user_id == user_id)
        if account is None:
            raise Problem(404, "This account has no password.")
        keys = [email_key(account["email"], self.config.login_throttle_attempts)]
        await self._refuse_if_throttled(keys)
        valid, _ = await verify_password(current, account["password_hash"])
        if not valid:
            await self.throttle.record_failure(keys)
            raise Problem(
                403,
                "The current password is not correct.",
                title="Password not changed",
                field="current_password",
            )
        if account["disabled"]:
            raise Problem(403, "This account is disabled.")
        new_hash = await hash_password(new)
        now = self.now()
        creds = self.tables.credentials
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(creds)
                .where(creds.c.user_id == user_id)
                .values(password_hash=new_hash, password_changed_at=now, updated_at=now)
            )
            # Whoever knew the old password may hold a session: end every one.
            await self._revoke_sessions(conn, user_id)

    async def me(self, caller: Principal) -> Row:
        user = None
        if caller.kind == "user" and (user_id := parse_user_id(caller.subject)) is not None:
            user = await self.users_repo.get(user_id)
        return {
            "id": caller.subject,
            "kind": caller.kind,
            "roles": sorted(caller.roles),
            "tenant": caller.tenant,
            "user": user,
        }

    async def _account(self, condition: sa.ColumnElement[bool]) -> Row | None:
        users, creds = self.tables.users, self.tables.credentials
        query = (
            sa.select(
                creds.c.user_id,
                users.c.email,
                creds.c.password_hash,
                creds.c.roles,
                creds.c.tenant_id,
                creds.c.disabled,
            )
            .select_from(users.join(creds, creds.c.user_id == users.c.id))
            .where(condition)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return dict(row) if row is not None else None

    def _user_id(self, caller: Principal) -> uuid.UUID:
        user_id = parse_user_id(caller.subject) if caller.kind == "user" else None
        if user_id is None:
            raise Problem(403, "Only a user (not an API key) has a password.")
        return user_id

    # Throttling ----------------------------------------------------------------------------

    def _throttle_keys(self, email: str, client_ip: str | None) -> list[ThrottleKey]:
        limit = self.config.login_throttle_attempts
        keys = [email_key(email, limit)]
        if client_ip is not None:
            keys.append(ThrottleKey(f"ip:{client_ip}", limit * self.config.ip_throttle_factor))
        return keys

    async def _refuse_if_throttled(self, keys: list[ThrottleKey]) -> None:
        wait = await self.throttle.retry_after(keys)
        if wait is not None:
            raise Problem(
                429, THROTTLED, title="Too many attempts", headers={"Retry-After": str(wait)}
            )

    # Sessions (refresh tokens) -------------------------------------------------------------

    def _pair(self, subject: str, roles: Iterable[str], tenant: str | None, refresh: str) -> Row:
        access, _ = self.issuer.issue(subject, "user", roles, tenant)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.issuer.access_ttl,
            "refresh_token": refresh,
            "refresh_expires_in": self.config.refresh_ttl,
        }

    async def _new_refresh_token(
        self, conn: AsyncConnection, user_id: uuid.UUID, family_id: uuid.UUID | None
    ) -> str:
        token = secrets.token_urlsafe(32)
        now = self.now()
        await conn.execute(
            sa.insert(self.tables.refresh_tokens).values(
                id=uuid7(),
                family_id=family_id or uuid7(),
                user_id=user_id,
                token_hash=digest(token),
                expires_at=now + self.refresh_ttl,
                created_at=now,
            )
        )
        return token

    async def refresh(self, token: str) -> Row:
        tokens, creds = self.tables.refresh_tokens, self.tables.credentials
        query = (
            sa.select(
                tokens.c.id,
                tokens.c.family_id,
                tokens.c.user_id,
                tokens.c.expires_at,
                tokens.c.used_at,
                tokens.c.revoked_at,
                creds.c.roles,
                creds.c.tenant_id,
                creds.c.disabled,
            )
            .select_from(tokens.join(creds, creds.c.user_id == tokens.c.user_id))
            .where(tokens.c.token_hash == digest(token))
        )
        async with self.engine.begin() as conn:
            row = (await conn.execute(query)).mappings().first()
            new = None if row is None else await self._rotate(conn, row)
        # Refused after the commit, so a revocation made above sticks.
        if row is None or new is None:
            raise Problem(401, REFRESH_REFUSED, title="Refresh refused", headers=BEARER)
        return self._pair(str(row["user_id"]), row["roles"], row["tenant_id"], new)

    async def _rotate(self, conn: AsyncConnection, row: sa.RowMapping) -> str | None:
        """The next refresh token of the family, or None (the family revoked if need be)."""
        if row["revoked_at"] is not None:
            return None
        if row["used_at"] is not None:
            # A used token came back: one of its two holders is not the user. Which one
            # cannot be told, so every token descended from the same login dies.
            log.warning(
                "refresh token reuse: session family %s of user %s revoked",
                row["family_id"],
                row["user_id"],
            )
            await self._revoke_family(conn, row["family_id"])
            return None
        if row["disabled"] or row["expires_at"] <= self.now():
            await self._revoke_family(conn, row["family_id"])
            return None
        tokens = self.tables.refresh_tokens
        claimed = await conn.execute(
            sa.update(tokens)
            .where(tokens.c.id == row["id"], tokens.c.used_at.is_(None))
            .values(used_at=self.now())
        )
        if claimed.rowcount != 1:
            # A concurrent request rotated this token a moment ago: it was presented
            # twice, which is what a stolen copy looks like.
            log.warning("refresh token raced: session family %s revoked", row["family_id"])
            await self._revoke_family(conn, row["family_id"])
            return None
        return await self._new_refresh_token(conn, row["user_id"], row["family_id"])

    async def logout(self, token: str) -> None:
        tokens = self.tables.refresh_tokens
        query = sa.select(tokens.c.family_id).where(tokens.c.token_hash == digest(token))
        async with self.engine.begin() as conn:
            family = (await conn.execute(query)).scalar_one_or_none()
            if family is not None:
                await self._revoke_family(conn, family)

    async def _revoke_family(self, conn: AsyncConnection, family_id: uuid.UUID) -> None:
        tokens = self.tables.refresh_tokens
        await conn.execute(
            sa.update(tokens)
            .where(tokens.c.family_id == family_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=self.now())
        )

    async def _revoke_sessions(self, conn: AsyncConnection, user_id: uuid.UUID) -> None:
        tokens = self.tables.refresh_tokens
        await conn.execute(
            sa.update(tokens)
            .where(tokens.c.user_id == user_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=self.now())
        )

    # API keys ------------------------------------------------------------------------------

    def require_admin(self, caller: Principal) -> None:
        if not caller.authenticated:
            raise Problem(401, "Authentication required: send an access token.", headers=BEARER)
        if not caller.has_any(self.config.admin_roles):
            raise Problem(403, "This needs one of the roles: " + _names(self.config.admin_roles))
        if self.config.tenancy and caller.tenant is None:
            raise Problem(403, "The access token carries no tenant.")

    def _known_roles(self, roles: Iterable[str]) -> list[str]:
        chosen = sorted(set(roles))
        unknown = [role for role in chosen if role not in self.config.roles]
        if unknown:
            raise Problem(
                422,
                f"Unknown roles: {_names(unknown)} (roles: {_names(self.config.roles)}).",
                title="Validation failed",
                field="roles",
            )
        return chosen

    def _tenant_condition(self, column: sa.ColumnElement[Any], caller: Principal) -> list[Any]:
        # Admins manage their own tenant only; without tenancy there is one tenant.
        return [column == caller.tenant] if self.config.tenancy else []

    async def create_api_key(
        self, caller: Principal, name: str, roles: list[str], expires_in_days: int | None
    ) -> Row:
        self.require_admin(caller)
        now = self.now()
        row = await insert_api_key(
            self.engine,
            self.tables,
            name=name,
            roles=self._known_roles(roles),
            tenant=caller.tenant if self.config.tenancy else None,
            created_by=parse_user_id(caller.subject) if caller.kind == "user" else None,
            now=now,
            expires_at=now + dt.timedelta(days=expires_in_days) if expires_in_days else None,
        )
        return {**_api_key_view(row), "key": row["key"]}

    async def list_api_keys(self, caller: Principal) -> Row:
        self.require_admin(caller)
        keys = self.tables.api_keys
        query = (
            sa.select(keys)
            .where(*self._tenant_condition(keys.c.tenant_id, caller))
            .order_by(keys.c.created_at, keys.c.id)
        )
        async with self.engine.connect() as conn:
            items = [_api_key_view(dict(r)) for r in (await conn.execute(query)).mappings()]
        return {"items": items, "total": len(items)}

    async def revoke_api_key(self, caller: Principal, key_id: str) -> None:
        self.require_admin(caller)
        keys = self.tables.api_keys
        parsed = parse_user_id(key_id)
        missing = Problem(404, f"No API key with id {key_id}.")
        if parsed is None:
            raise missing
        scope = [keys.c.id == parsed, *self._tenant_condition(keys.c.tenant_id, caller)]
        async with self.engine.begin() as conn:
            found = (await conn.execute(sa.select(keys.c.revoked_at).where(*scope))).first()
            if found is None:
                raise missing
            if found.revoked_at is None:  # revoking twice keeps the first moment
                await conn.execute(sa.update(keys).where(*scope).values(revoked_at=self.now()))

    async def client_token(self, api_key: str) -> Row:
        refused = Problem(
            401, CLIENT_REFUSED, title="Unauthorized", headers=BEARER, error="invalid_client"
        )
        keys = self.tables.api_keys
        now = self.now()
        async with self.engine.begin() as conn:
            row = await find_api_key(conn, self.tables, api_key, now)
            if row is None:
                raise refused
            await conn.execute(
                sa.update(keys).where(keys.c.id == row["id"]).values(last_used_at=now)
            )
        token, _ = self.issuer.issue(
            f"apikey:{row['id']}", "client", row["roles"], row["tenant_id"]
        )
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.issuer.access_ttl}

    # User administration -------------------------------------------------------------------

    async def set_roles(self, caller: Principal, user_id: str, roles: list[str]) -> Row:
        self.require_admin(caller)
        chosen = self._known_roles(roles)
        if _is_self(caller, user_id) and self.config.admin_roles.isdisjoint(chosen):
            # Guards against locking the last admin out; another admin can still do it.
            raise Problem(
                409,
                "You cannot remove your own admin role; another admin has to.",
                title="Conflict",
                field="roles",
            )
        return await self._update_access(caller, user_id, {"roles": chosen}, revoke=False)

    async def set_disabled(self, caller: Principal, user_id: str, disabled: bool) -> Row:
        self.require_admin(caller)
        if disabled and _is_self(caller, user_id):
            raise Problem(
                409, "You cannot disable your own account.", title="Conflict", field="disabled"
            )
        return await self._update_access(caller, user_id, {"disabled": disabled}, revoke=disabled)

    async def _update_access(
        self, caller: Principal, user_id: str, values: Row, *, revoke: bool
    ) -> Row:
        creds = self.tables.credentials
        parsed = parse_user_id(user_id)
        missing = Problem(404, f"No user with id {user_id} has an account.")
        if parsed is None:
            raise missing
        scope = [creds.c.user_id == parsed, *self._tenant_condition(creds.c.tenant_id, caller)]
        read = sa.select(creds.c.user_id, creds.c.roles, creds.c.tenant_id, creds.c.disabled)
        async with self.engine.begin() as conn:
            if (await conn.execute(read.where(*scope))).first() is None:
                raise missing
            await conn.execute(
                sa.update(creds).where(*scope).values(**values, updated_at=self.now())
            )
            if revoke:
                await self._revoke_sessions(conn, parsed)
            row = (await conn.execute(read.where(*scope))).mappings().one()
        return {
            "id": row["user_id"],
            "roles": row["roles"],
            "tenant": row["tenant_id"],
            "disabled": row["disabled"],
        }


def check_password(password: str, field: str) -> None:
    problem = password_problem(password)
    if problem is not None:
        raise Problem(
            422,
            f"The password {problem}.",
            title="Weak password",
            type="urn:microforge:problem:validation",
            field=field,
        )


async def insert_credentials(
    conn: AsyncConnection,
    tables: IdentityTables,
    user_id: uuid.UUID,
    password_hash: str,
    roles: list[str],
    tenant: str | None,
    now: dt.datetime,
) -> None:
    await conn.execute(
        sa.insert(tables.credentials).values(
            user_id=user_id,
            password_hash=password_hash,
            roles=roles,
            tenant_id=tenant,
            disabled=False,
            password_changed_at=now,
            created_at=now,
            updated_at=now,
        )
    )


def _api_key_view(row: Row) -> Row:
    """What the API shows of a key: never its hash."""
    return {
        "id": row["id"],
        "name": row["name"],
        "prefix": row["prefix"],
        "roles": row["roles"],
        "tenant": row["tenant_id"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "expires_at": row["expires_at"],
        "revoked_at": row["revoked_at"],
        "last_used_at": row["last_used_at"],
    }


def _is_self(caller: Principal, user_id: str) -> bool:
    target = parse_user_id(user_id)
    return caller.kind == "user" and target is not None and target == parse_user_id(caller.subject)


def _names(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


class IdentityError(ValueError):
    """A user cannot be created as asked; the message says why (for the CLI)."""


async def create_user(
    engine: AsyncEngine,
    tables: IdentityTables,
    email: str,
    password: str,
    roles: Iterable[str],
    user_fields: Mapping[str, Any] | None = None,
    *,
    tenant: str | None = None,
    known_roles: Iterable[str] | None = None,
) -> Row:
    """Create a user who can log in (e.g. the first admin); return the user's row.

    ``user_fields`` are the user entity's other required fields. Raises IdentityError for
    a weak password, an unknown role, a taken e-mail or a row the database refuses.
    """
    problem = password_problem(password)
    if problem is not None:
        raise IdentityError(f"the password {problem}")
    chosen = sorted(set(roles))
    if known_roles is not None and (unknown := set(chosen) - set(known_roles)):
        raise IdentityError(f"unknown roles: {_names(unknown)}")
    users = tables.users
    email = normalize_email(email)
    password_hash = await hash_password(password)
    now = dt.datetime.now(dt.UTC)
    row: Row = {**(user_fields or {}), "email": email, "id": uuid7()}
    row.update(created_at=now, updated_at=now)
    if "version" in users.c:  # as the repository's inserts (If-Match compares it)
        row["version"] = 1
    if tenant is not None and "tenant_id" in users.c:
        row["tenant_id"] = tenant
    try:
        async with engine.begin() as conn:
            taken = await conn.execute(sa.select(users.c.id).where(users.c.email == email))
            if taken.first() is not None:
                raise IdentityError(f"a user with the e-mail {email} exists already")
            await conn.execute(sa.insert(users).values(row))
            await insert_credentials(conn, tables, row["id"], password_hash, chosen, tenant, now)
            created = (
                (await conn.execute(sa.select(users).where(users.c.id == row["id"])))
                .mappings()
                .one()
            )
    except IntegrityError as exc:
        raise IdentityError(f"the database refused the user: {exc.orig}") from None
    return dict(created)
