"""Generated services run in-process: each app on its own SQLite file, called over ASGI.

``mounted_services`` imports the generated packages of a project (``<svc>_service`` under
``services/<svc>/``), builds each app the way its generated conftest does (the identity
service signs with a given KeyStore, the others trust that store's JWKS through a file)
and gives one ``httpx.AsyncClient`` per service. ``fingerprint`` summarises every table
of every database so a test can prove a request changed nothing.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from microforge.runtime.auth.keys import KeyStore
from microforge.runtime.db import sqlite_url
from microforge.runtime.idempotency.store import TABLE_NAME as IDEMPOTENCY_TABLE

TableFingerprint = tuple[int, str]  # (row count, sha256 of the sorted rows)
Fingerprint = dict[str, TableFingerprint]  # "<service>.<table>" -> its fingerprint


@dataclass
class MountedService:
    name: str
    app: FastAPI
    client: httpx.AsyncClient
    metadata: sa.MetaData
    app_module: ModuleType  # <svc>_service.generated.app

    @property
    def engine(self) -> AsyncEngine:
        engine: AsyncEngine = self.app.state.engine
        return engine


def _drop_modules(package: str) -> None:
    for name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
        del sys.modules[name]


def _import_service(service_dir: Path) -> tuple[ModuleType, ModuleType, sa.MetaData]:
    package = f"{service_dir.name}_service"
    # Another test may have imported a service of the same name from its own project.
    _drop_modules(package)
    # Each service has its own package name, so the folders can share sys.path.
    sys.path.insert(0, str(service_dir))
    importlib.invalidate_caches()
    app_module = importlib.import_module(f"{package}.generated.app")
    settings_module = importlib.import_module(f"{package}.generated.settings")
    tables = importlib.import_module(f"{package}.generated.tables")
    metadata: sa.MetaData = tables.metadata
    return app_module, settings_module, metadata


def _forget_service(service_dir: Path) -> None:
    """Undo the import, so another test module may mount a project with the same names."""
    _drop_modules(f"{service_dir.name}_service")
    while str(service_dir) in sys.path:
        sys.path.remove(str(service_dir))


@asynccontextmanager
async def mounted_services(
    project: Path, names: Iterable[str], keys: KeyStore, workdir: Path
) -> AsyncIterator[dict[str, MountedService]]:
    """The services ``names`` of the generated ``project``, on fresh databases in ``workdir``.

    The identity service (its settings have ``auth_key_dir``) signs with ``keys``; the
    others verify against ``keys.jwks()`` written to a file.
    """
    jwks_file = workdir / "jwks.json"
    jwks_file.write_text(json.dumps(keys.jwks()), encoding="utf-8")
    mounted: dict[str, MountedService] = {}
    service_dirs = [project / "services" / name for name in names]
    async with AsyncExitStack() as stack:
        for service_dir in service_dirs:
            stack.callback(_forget_service, service_dir)
        for service_dir in service_dirs:
            name = service_dir.name
            app_module, settings_module, metadata = _import_service(service_dir)
            assert Path(app_module.__file__ or "").is_relative_to(service_dir)
            settings_cls: Any = settings_module.Settings
            url = sqlite_url(workdir / f"{name}.db")
            auth: dict[str, str] = (
                {"auth_key_dir": str(keys.directory)}
                if "auth_key_dir" in settings_cls.model_fields
                else {"auth_jwks_file": str(jwks_file)}
            )
            app: FastAPI = app_module.create_app(settings_cls(database_url=url, **auth))
            engine: AsyncEngine = app.state.engine
            stack.push_async_callback(engine.dispose)
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            transport = httpx.ASGITransport(app=app)
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url=f"http://{name}")
            )
            mounted[name] = MountedService(name, app, client, metadata, app_module)
        yield mounted


async def fingerprint(services: Iterable[MountedService]) -> Fingerprint:
    """Row count and a hash of all rows (sorted) of every data table of every service.

    The Idempotency-Key table is left out: a refused keyed request stores its refusal there
    (for replays), which changes no data.
    """
    result: Fingerprint = {}
    for service in services:
        async with service.engine.connect() as conn:
            for table in service.metadata.sorted_tables:
                if table.name == IDEMPOTENCY_TABLE:
                    continue
                rows = (await conn.execute(sa.select(table))).all()
                lines = sorted(repr(tuple(row)) for row in rows)
                digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
                result[f"{service.name}.{table.name}"] = (len(rows), digest)
    return result


def changed_tables(before: Mapping[str, TableFingerprint], after: Fingerprint) -> list[str]:
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )
