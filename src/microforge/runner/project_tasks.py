"""One-shot tasks on a generated project's services, run in this process.

Migrating six services as six interpreters costs seconds of imports each; the service
packages have distinct names, so one interpreter can run them all in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine


class TaskError(RuntimeError):
    """A migration or seed failed; the message carries the cause's last lines."""


@contextlib.contextmanager
def service_context(service_dir: Path, env: dict[str, str]) -> Iterator[None]:
    """Import path and environment of one service, restored afterwards."""
    saved_env = dict(os.environ)
    packages = [p.name for p in service_dir.glob("*_service") if p.is_dir()]
    # Another project's service of the same name may have been imported before (tests,
    # `users create` after `seed`): its modules would point at that project's files.
    _forget(packages)
    sys.path.insert(0, str(service_dir))
    os.environ.update(env)
    try:
        yield
    finally:
        sys.path.remove(str(service_dir))
        os.environ.clear()
        os.environ.update(saved_env)
        _forget(packages)


def _forget(packages: list[str]) -> None:
    for name in list(sys.modules):
        if name.partition(".")[0] in packages:
            del sys.modules[name]


def migrate(service_dir: Path, env: dict[str, str]) -> str:
    """`alembic upgrade head` for one service; returns Alembic's log."""
    log = io.StringIO()
    config = Config(str(service_dir / "alembic.ini"), stdout=log)
    with service_context(service_dir, env), contextlib.redirect_stderr(log):
        try:
            command.upgrade(config, "head")
        except Exception as exc:
            raise TaskError(f"{type(exc).__name__}: {exc}".strip()[-2000:]) from exc
    return log.getvalue()


def seed(service_dir: Path, package: str, env: dict[str, str]) -> dict[str, int]:
    """Load the spec's seed rows of one service; returns new rows per entity."""
    with service_context(service_dir, env):
        try:
            module = importlib.import_module(f"{package}.generated.seed")
            counts: dict[str, int] = asyncio.run(module.load())
        except Exception as exc:
            raise TaskError(f"{type(exc).__name__}: {exc}".strip()[-2000:]) from exc
    return counts


def _identity_engine(package: str) -> tuple[Any, AsyncEngine]:
    """The identity service's generated app module and an engine on its database.

    Call inside `service_context`; dispose of the engine when done.
    """
    from microforge.runtime.db import create_engine

    app_module = importlib.import_module(f"{package}.generated.app")
    settings_module = importlib.import_module(f"{package}.generated.settings")
    return app_module, create_engine(settings_module.Settings().database_url)


def create_user(
    service_dir: Path,
    package: str,
    env: dict[str, str],
    *,
    email: str,
    password: str,
    roles: list[str],
    fields: dict[str, str],
    tenant: str | None = None,
) -> str:
    """Create a user who can log in, in the identity service's database; returns its id.

    For the first admin: signup only ever grants the spec's signup_roles.
    """
    from pydantic import ValidationError

    from microforge.runtime.auth.identity.service import IdentityError
    from microforge.runtime.auth.identity.service import create_user as create

    with service_context(service_dir, env):
        app_module, engine = _identity_engine(package)
        config = app_module.IDENTITY
        try:
            # The same validation as signup: the user entity's create schema.
            body = config.user_create_model.model_validate({**fields, "email": email})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise TaskError(f"invalid user fields: {problems}") from None
        values = body.model_dump(exclude={"email"})

        async def run() -> str:
            try:
                row = await create(
                    engine,
                    app_module.TABLES,
                    email,
                    password,
                    roles,
                    values,
                    tenant=tenant,
                    known_roles=config.roles,
                )
            finally:
                await engine.dispose()
            return str(row["id"])

        try:
            return asyncio.run(run())
        except IdentityError as exc:
            raise TaskError(str(exc)) from None


def provision_client_keys(
    service_dir: Path, package: str, env: dict[str, str], roles: dict[str, list[str]], folder: Path
) -> dict[str, str]:
    """Every service's own API key, kept in `folder` (0600 files) across runs of `up`.

    A stored key is reused while the identity database still accepts it with the same
    roles; otherwise a new one is issued (and the old one revoked).
    """
    from microforge.runtime.auth.identity.api_keys import provision_client_key
    from microforge.runtime.types import utcnow

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with service_context(service_dir, env):
        app_module, engine = _identity_engine(package)

        async def run() -> dict[str, str]:
            keys: dict[str, str] = {}
            try:
                for name, wanted in roles.items():
                    path = folder / f"{name}.key"
                    current = path.read_text().strip() if path.exists() else None
                    key = await provision_client_key(
                        engine, app_module.TABLES, name, wanted, current, utcnow()
                    )
                    if key != current:
                        path.touch(mode=0o600)
                        path.write_text(key + "\n")
                    keys[name] = key
            finally:
                await engine.dispose()
            return keys

        try:
            return asyncio.run(run())
        except Exception as exc:
            raise TaskError(f"{type(exc).__name__}: {exc}".strip()[-2000:]) from exc
