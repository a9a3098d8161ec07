"""Generate projects in tests and run commands inside their services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from microforge.generator.project import GenerateReport, generate_project
from microforge.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop" / "shop.yaml"


def generate(spec_path: Path, out: Path) -> GenerateReport:
    return generate_project(load_spec(spec_path), spec_path, out)


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a command with this interpreter's environment; the output is kept for asserts."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("PYTHONPATH", None)
    return subprocess.run(
        args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def python(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, *args], cwd, env)


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and ".mypy_cache" not in p.parts
    }
