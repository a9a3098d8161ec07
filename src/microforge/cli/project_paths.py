"""Resolve what the user pointed at: a spec file or a generated project folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from microforge.generator.project import SPEC_COPY


class UsageError(Exception):
    """A mistake in how the command was called; the message says how to fix it."""


@dataclass(frozen=True)
class Target:
    spec: Path
    out: Path


def resolve(spec_or_dir: Path, out: Path | None, default_name: str | None = None) -> Target:
    if spec_or_dir.is_dir():
        spec = spec_or_dir / SPEC_COPY
        if not spec.is_file():
            raise UsageError(
                f"{spec_or_dir} is a folder without {SPEC_COPY}; pass a spec file or a "
                "folder made by `microforge generate`"
            )
        return Target(spec=spec, out=out or spec_or_dir)
    if not spec_or_dir.exists():
        raise UsageError(f"{spec_or_dir} does not exist")
    return Target(spec=spec_or_dir, out=out or Path("build") / (default_name or spec_or_dir.stem))
