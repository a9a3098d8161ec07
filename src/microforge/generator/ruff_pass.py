"""Format and lint generated Python with ruff, as a careful author would before committing."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ruff.__main__ import find_ruff_bin  # type: ignore[import-untyped]


class FormattingError(RuntimeError):
    """ruff refused the generated code: a generator bug, never the user's fault."""


def ruff_pass(root: Path) -> None:
    ruff: str = find_ruff_bin()
    steps = (
        ["format", "--quiet"],
        ["check", "--fix", "--quiet", "--exit-zero"],
        ["format", "--quiet"],
    )
    for args in steps:
        result = subprocess.run(
            [ruff, *args, "."], cwd=root, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise FormattingError(f"ruff {args[0]} failed:\n{result.stdout}{result.stderr}")
