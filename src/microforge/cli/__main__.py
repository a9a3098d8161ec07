"""`python -m microforge.cli` runs the CLI (as the `microforge` command does)."""

from .main import run

run()
