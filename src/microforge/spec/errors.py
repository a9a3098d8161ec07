"""Spec problems carry where they are (file, line, column, path) and what was expected."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PathPart = str | int
Path = tuple[PathPart, ...]


def format_path(path: Sequence[PathPart]) -> str:
    """Render a spec path the way users write it: services.catalog.entities.Product."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def suggest(word: str, choices: Iterable[str]) -> str:
    """'; did you mean 'x'?' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True)
class SpecIssue:
    message: str
    path: Path = ()
    file: str = "<spec>"
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {format_path(self.path)}: {self.message}"


class SpecError(Exception):
    """One or more problems in a spec; nothing was written."""

    def __init__(self, issues: Iterable[SpecIssue]) -> None:
        self.issues = sorted(
            issues, key=lambda i: (i.line or 0, i.column or 0, format_path(i.path))
        )
        super().__init__("\n".join(str(i) for i in self.issues))
