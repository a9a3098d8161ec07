"""Settings every generated service reads from its environment (pydantic-settings)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .db import database_url_problem, sqlite_url


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = ""
    echo_sql: bool = False
    pool_size: int = Field(10, ge=1, le=1000)

    @field_validator("database_url")
    @classmethod
    def _usable_url(cls, value: str) -> str:
        problem = database_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


def data_dir(project_root: Path) -> Path:
    """Where SQLite files live: $MICROFORGE_DATA_DIR, else <project>/data."""
    configured = os.environ.get("MICROFORGE_DATA_DIR")
    return Path(configured) if configured else project_root / "data"


def default_database_url(project_root: Path, service: str) -> str:
    return sqlite_url(data_dir(project_root) / f"{service}.db")
