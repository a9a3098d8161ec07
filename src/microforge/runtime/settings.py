"""Settings every generated service reads from its environment (pydantic-settings)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from .db import sqlite_url


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = ""
    echo_sql: bool = False
    pool_size: int = 10


def data_dir(project_root: Path) -> Path:
    """Where SQLite files live: $MICROFORGE_DATA_DIR, else <project>/data."""
    configured = os.environ.get("MICROFORGE_DATA_DIR")
    return Path(configured) if configured else project_root / "data"


def default_database_url(project_root: Path, service: str) -> str:
    return sqlite_url(data_dir(project_root) / f"{service}.db")
