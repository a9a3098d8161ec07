"""Settings every generated service reads from its environment (pydantic-settings)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Self, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .db import database_url_problem, sqlite_url

S = TypeVar("S", bound=BaseSettings)


def load_settings(settings_class: type[S]) -> S:
    """``settings_class()`` from the environment; a bad variable stops the process with a
    message naming each variable and what is wrong with it, instead of a traceback."""
    try:
        return settings_class()
    except ValidationError as exc:
        prefix = str(settings_class.model_config.get("env_prefix", "")).upper()
        problems = []
        for error in exc.errors():
            where = "_".join(str(part) for part in error["loc"]).upper()
            # Values are not echoed: they may be secrets (database passwords, API keys).
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"  {prefix}{where}: {message}" if where else f"  {message}")
        raise SystemExit("Invalid settings in the environment:\n" + "\n".join(problems)) from None


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = ""
    echo_sql: bool = False
    pool_size: int = Field(10, ge=1, le=1000)
    # Larger request bodies are refused with 413 before they are parsed.
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=1024**3)
    # Browser origins allowed to call the service directly (a JSON list); none by default.
    cors_origins: list[str] = Field(default_factory=list)
    # Caching (docs/caching.md): servers for entities with `backend: redis | memcached`,
    # the Redis pub/sub bus that carries invalidations between instances of the service
    # (needed when several instances use the in-process cache), and a switch that turns
    # every cache of the service off.
    redis_url: str = ""
    memcached_url: str = ""
    cache_bus: bool = False
    cache_enabled: bool = True

    @field_validator("database_url")
    @classmethod
    def _usable_url(cls, value: str) -> str:
        problem = database_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _bus_has_a_server(self) -> Self:
        if self.cache_bus and not self.redis_url.strip():
            prefix = str(self.model_config.get("env_prefix", "")).upper()
            raise ValueError(f"{prefix}CACHE_BUS needs {prefix}REDIS_URL: the bus is Redis pub/sub")
        return self


class AuthSettings(BaseSettings):
    """How a service checks tokens; every field has a generated default but the JWKS source."""

    model_config = SettingsConfigDict(extra="ignore")

    auth_issuer: str = ""
    auth_audience: str = ""
    # Where the identity service publishes its public keys (`microforge up` sets it) ...
    auth_jwks_url: str = ""
    # ... or a JWKS document on disk, for tests and for air-gapped deployments.
    auth_jwks_file: str = ""
    # This service's own credentials for calling the others (see runtime.auth.peers).
    auth_api_key: str = Field("", repr=False)
    auth_token_url: str = ""
    # The other services by name, e.g. {"inventory": "http://127.0.0.1:8003"} (JSON).
    peer_urls: dict[str, str] = Field(default_factory=dict)


class IdentitySettings(AuthSettings):
    """The identity service also signs: its private keys live in this folder."""

    auth_key_dir: str = ""
    # Proxies in front of the service that append to X-Forwarded-For (the gateway is one);
    # login throttling per client address trusts only that many hops.
    auth_trusted_proxy_hops: int = Field(0, ge=0, le=10)


def required(value: str, variable: str, reason: str) -> str:
    """``value``, or a settings error naming the variable to set and why it is needed."""
    if not value.strip():
        raise ValueError(f"{variable} is not set; the spec {reason}")
    return value


def data_dir(project_root: Path) -> Path:
    """Where SQLite files live: $MICROFORGE_DATA_DIR, else <project>/data."""
    configured = os.environ.get("MICROFORGE_DATA_DIR")
    return Path(configured) if configured else project_root / "data"


def default_database_url(project_root: Path, service: str) -> str:
    return sqlite_url(data_dir(project_root) / f"{service}.db")
