"""microforge: init, check, generate, up and seed."""

from __future__ import annotations

import keyword
import os
import re
import time
from pathlib import Path
from typing import Annotated

import typer

from microforge import __version__
from microforge.spec import Spec, SpecError, load_spec

from .project_paths import UsageError, resolve

app = typer.Typer(
    name="microforge",
    help="Describe your domain once in YAML; get FastAPI microservices you own.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[Path, typer.Argument(help="A spec file (YAML) or a generated project folder.")]
OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Output folder (default: build/<name>).")
]


def _say(message: str, *, err: bool = False, color: str | None = None) -> None:
    typer.secho(message, err=err, fg=color)


def _fail(message: str, code: int = 1) -> typer.Exit:
    _say(message, err=True, color="red")
    return typer.Exit(code)


def _load(path: Path) -> Spec:
    try:
        return load_spec(path)
    except SpecError as exc:
        count = len(exc.issues)
        for issue in exc.issues:
            _say(str(issue), err=True, color="red")
        plural = "s" if count != 1 else ""
        raise _fail(f"{count} problem{plural} in {path}; nothing was written.") from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"microforge {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """microforge turns one domain spec into FastAPI services, a gateway and migrations."""


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write microforge.yaml.")] = Path("."),
    force: Annotated[bool, typer.Option(help="Overwrite an existing spec.")] = False,
) -> None:
    """Write a commented starter spec."""
    target = directory / "microforge.yaml"
    if target.exists() and not force:
        raise _fail(f"{target} already exists; use --force to overwrite it.", 2)
    directory.mkdir(parents=True, exist_ok=True)
    starter = Path(__file__).resolve().parent.parent / "spec" / "starter.yaml"
    text = starter.read_text(encoding="utf-8")
    # Name the project after its folder when that makes a valid project name.
    name = re.sub(r"[^a-z0-9_]", "_", directory.resolve().name.lower()).strip("_")
    if re.fullmatch(r"[a-z][a-z0-9_]*", name) and not keyword.iskeyword(name):
        text = text.replace("\nname: library\n", f"\nname: {name}\n", 1)
    target.write_text(text, encoding="utf-8")
    _say(f"Wrote {target}. Next: microforge up {target}", color="green")


@app.command()
def check(spec: Annotated[Path, typer.Argument(help="The spec file to validate.")]) -> None:
    """Validate a spec; report every problem with file, line and path."""
    if spec.is_dir():
        raise _fail(f"{spec} is a folder; pass the spec file.", 2)
    loaded = _load(spec)
    entities = sum(len(s.entities) for s in loaded.services.values())
    _say(f"{spec}: ok ({len(loaded.services)} services, {entities} entities)", color="green")


@app.command()
def generate(spec: SpecArg, out: OutOpt = None) -> None:
    """Generate (or regenerate) the project; user-owned files are never overwritten."""
    _generate(spec, out)


def _generate(spec_or_dir: Path, out: Path | None) -> tuple[Spec, Path]:
    from microforge.generator.project import generate_project

    try:
        target = resolve(spec_or_dir, out)
    except UsageError as exc:
        raise _fail(str(exc), 2) from None
    spec = _load(target.spec)
    if out is None and not spec_or_dir.is_dir():
        target = resolve(spec_or_dir, None, spec.name)
    started = time.perf_counter()
    _say(f"Generating {spec.name} into {target.out} ...")
    report = generate_project(spec, target.spec, target.out)
    elapsed = time.perf_counter() - started
    for service, lines in report.migrations.items():
        _say(f"  migration for {service}: {len(lines)} change(s)", color="cyan")
    _say(
        f"Done in {elapsed:.1f}s: {len(report.written)} written, {len(report.unchanged)} "
        f"unchanged, {len(report.kept)} of your files kept, {len(report.removed)} removed.",
        color="green",
    )
    return spec, target.out


def _service_env(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("MICROFORGE_DATA_DIR", str((project / "data").resolve()))
    return env


def _migrate(spec: Spec, project: Path) -> None:
    from microforge.runner.project_tasks import TaskError, migrate

    from .up import environment_problems

    problems = environment_problems(spec, dict(os.environ))
    if problems:
        raise _fail("\n".join(["Fix these environment variables:", *problems]), 2)
    env = _task_env(project)
    for name in spec.services:
        service_dir = (project / "services" / name).resolve()
        _say(f"  migrating {name} ...")
        try:
            migrate(service_dir, env)
        except TaskError as exc:
            _say(str(exc), err=True)
            raise _fail(
                f"Migrating {name} failed; run `alembic upgrade head` in {service_dir} "
                "for the full trace."
            ) from None


def _task_env(project: Path) -> dict[str, str]:
    return {"MICROFORGE_DATA_DIR": _service_env(project)["MICROFORGE_DATA_DIR"]}


@app.command()
def migrate(spec: SpecArg, out: OutOpt = None) -> None:
    """Generate when needed and apply pending migrations of every service."""
    loaded, project = _generate(spec, out)
    _migrate(loaded, project)


@app.command()
def seed(spec: SpecArg, out: OutOpt = None) -> None:
    """Load the seed rows of the spec into every service's database (idempotent)."""
    from microforge.runner.project_tasks import TaskError
    from microforge.runner.project_tasks import seed as seed_service

    loaded, project = _generate(spec, out)
    _migrate(loaded, project)
    for name in loaded.services:
        try:
            counts = seed_service(
                (project / "services" / name).resolve(), f"{name}_service", _task_env(project)
            )
        except TaskError as exc:
            _say(str(exc), err=True)
            raise _fail(f"Seeding {name} failed.") from None
        for entity, count in counts.items():
            _say(f"  {name}: {entity}: {count} new rows")


@app.command()
def up(
    spec: SpecArg,
    out: OutOpt = None,
    port: Annotated[int, typer.Option(help="Gateway port; services take the next ones.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Generate when needed, migrate, start every service and the gateway; Ctrl-C stops all."""
    from .up import environment_problems, run_up

    if not 1 <= port <= 65535:
        raise _fail(f"--port must be between 1 and 65535, got {port}.", 2)
    loaded, project = _generate(spec, out)
    problems = environment_problems(loaded, dict(os.environ))
    if problems:
        raise _fail("\n".join(["Fix these environment variables:", *problems]), 2)
    _migrate(loaded, project)
    raise typer.Exit(run_up(loaded, project, host, port, _service_env(project)))


def _register_groups() -> None:
    from .auth_commands import keys_app, users_app

    app.add_typer(keys_app, name="keys")
    app.add_typer(users_app, name="users")


_register_groups()


def run() -> None:
    app()
