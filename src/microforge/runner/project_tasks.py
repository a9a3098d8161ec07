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

from alembic import command
from alembic.config import Config


class TaskError(RuntimeError):
    """A migration or seed failed; the message carries the cause's last lines."""


@contextlib.contextmanager
def service_context(service_dir: Path, env: dict[str, str]) -> Iterator[None]:
    """Import path and environment of one service, restored afterwards."""
    saved_env = dict(os.environ)
    sys.path.insert(0, str(service_dir))
    os.environ.update(env)
    try:
        yield
    finally:
        sys.path.remove(str(service_dir))
        os.environ.clear()
        os.environ.update(saved_env)


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
