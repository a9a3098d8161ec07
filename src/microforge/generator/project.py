"""Write a whole project: render into a staging folder, format, then sync into place.

Three kinds of files:
- generated: rewritten on every run (marked DO NOT EDIT), removed when no longer produced;
- owned: the user's (hooks, custom routes, main.py), written once and never touched again;
- migrations: added when the tables change, never rewritten.
Nothing reaches the output folder unless the whole render and ruff pass succeeded.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import MetaData

from microforge import __version__
from microforge.spec.model import Spec

from .plan import ProjectPlan, ServicePlan, build_plan
from .render import environment
from .ruff_pass import ruff_pass
from .schema_diff import describe, diff_metadata, load_metadata, render_ops

MANIFEST = Path(".microforge/manifest.json")
SPEC_COPY = "microforge.yaml"
SNAPSHOT = "migrations/schema_snapshot.py"


@dataclass
class GenerateReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # user-owned files left as they were
    removed: list[str] = field(default_factory=list)
    migrations: dict[str, list[str]] = field(default_factory=dict)  # service -> change lines


@dataclass
class _Staged:
    generated: dict[str, str] = field(default_factory=dict)
    owned: dict[str, str] = field(default_factory=dict)
    migrations: dict[str, str] = field(default_factory=dict)


def generate_project(spec: Spec, spec_path: Path, out: Path) -> GenerateReport:
    plan = build_plan(spec)
    staged = _render(plan, spec_path.read_text(encoding="utf-8"), SPEC_COPY)
    report = GenerateReport()
    with tempfile.TemporaryDirectory(prefix="microforge-") as tmp:
        staging = Path(tmp)
        for service in plan.services:
            _stage_migration(plan, service, staged, out, SPEC_COPY, report)
        for group in (staged.generated, staged.owned, staged.migrations):
            for rel, content in group.items():
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content, encoding="utf-8")
        ruff_pass(staging)
        for service in plan.services:
            tables = staging / _service_dir(service) / service.package / "generated/tables.py"
            if service.name in report.migrations:
                staged.generated[f"{_service_dir(service)}/{SNAPSHOT}"] = tables.read_text()
            else:
                snapshot = out / _service_dir(service) / SNAPSHOT
                staged.generated[f"{_service_dir(service)}/{SNAPSHOT}"] = snapshot.read_text()
        _sync(staging, staged, out, report)
    return report


def _service_dir(service: ServicePlan) -> str:
    return f"services/{service.name}"


def _render(plan: ProjectPlan, spec_text: str, spec_file: str) -> _Staged:
    env = environment()
    staged = _Staged()

    def put(kind: dict[str, str], rel: str, template: str, **context: object) -> None:
        kind[rel] = env.get_template(template).render(project=plan, spec_file=spec_file, **context)

    staged.generated[SPEC_COPY] = spec_text
    put(staged.generated, "README.md", "project/README.md.j2")
    put(staged.owned, ".gitignore", "project/gitignore.j2")
    for service in plan.services:
        root = _service_dir(service)
        pkg = f"{root}/{service.package}"
        ctx = {"service": service}
        put(staged.generated, f"{root}/pyproject.toml", "service/pyproject.toml.j2", **ctx)
        put(staged.generated, f"{root}/alembic.ini", "service/alembic.ini.j2", **ctx)
        put(staged.generated, f"{root}/migrations/env.py", "service/env.py.j2", **ctx)
        put(staged.generated, f"{root}/migrations/script.py.mako", "service/script.py.mako.j2")
        put(staged.generated, f"{pkg}/__init__.py", "service/package_init.py.j2", **ctx)
        put(staged.owned, f"{pkg}/main.py", "service/main.py.j2", **ctx)
        gen = f"{pkg}/generated"
        put(staged.generated, f"{gen}/__init__.py", "service/generated_init.py.j2", **ctx)
        for module in ("settings", "tables", "schemas", "resources", "policies", "app", "seed"):
            put(staged.generated, f"{gen}/{module}.py", f"service/{module}.py.j2", **ctx)
        put(staged.generated, f"{gen}/routes/__init__.py", "service/routes_init.py.j2", **ctx)
        put(staged.owned, f"{pkg}/custom/__init__.py", "service/custom_init.py.j2", **ctx)
        put(staged.owned, f"{pkg}/custom/routes.py", "service/custom_routes.py.j2", **ctx)
        put(staged.owned, f"{pkg}/custom/hooks/__init__.py", "service/hooks_init.py.j2", **ctx)
        staged.generated[f"{root}/tests/__init__.py"] = ""
        staged.generated[f"{root}/tests/generated/__init__.py"] = ""
        put(staged.generated, f"{root}/tests/conftest.py", "service/conftest.py.j2", **ctx)
        put(staged.owned, f"{root}/tests/test_custom.py", "service/test_custom.py.j2", **ctx)
        for entity in service.entities:
            ectx = {**ctx, "entity": entity}
            routes = f"{gen}/routes/{entity.plural}.py"
            put(staged.generated, routes, "service/routes.py.j2", **ectx)
            put(
                staged.owned,
                f"{pkg}/custom/hooks/{entity.plural}.py",
                "service/hooks.py.j2",
                **ectx,
            )
            put(
                staged.generated,
                f"{root}/tests/generated/test_{entity.plural}.py",
                "service/test_entity.py.j2",
                **ectx,
            )
    return staged


def _stage_migration(
    plan: ProjectPlan,
    service: ServicePlan,
    staged: _Staged,
    out: Path,
    spec_file: str,
    report: GenerateReport,
) -> None:
    root = _service_dir(service)
    versions = out / root / "migrations/versions"
    existing = sorted(versions.glob("[0-9][0-9][0-9][0-9]_*.py")) if versions.exists() else []
    snapshot = out / root / SNAPSHOT

    old = (
        load_metadata(snapshot.read_text(), str(snapshot))
        if existing and snapshot.exists()
        else MetaData()
    )
    tables_rel = f"{root}/{service.package}/generated/tables.py"
    new = load_metadata(staged.generated[tables_rel], tables_rel)
    diff = diff_metadata(old, new)
    if not diff.upgrade.ops:
        return
    number = len(existing) + 1
    revision = f"{number:04d}"
    down = f"{number - 1:04d}" if existing else None
    lines = describe(diff.upgrade)
    message = "Initial schema" if not existing else "Apply spec changes"
    slug = "initial" if not existing else "spec_change"
    up_code, down_code = render_ops(diff)
    body = "\n".join(f"- {line}" for line in lines)
    staged.migrations[f"{root}/migrations/versions/{revision}_{slug}.py"] = (
        environment()
        .get_template("service/migration.py.j2")
        .render(
            message=f"{message}.\n\n{body}",
            spec_file=spec_file,
            revision=revision,
            down_revision=down,
            upgrade=up_code,
            downgrade=down_code,
        )
    )
    report.migrations[service.name] = lines


def _sync(staging: Path, staged: _Staged, out: Path, report: GenerateReport) -> None:
    out.mkdir(parents=True, exist_ok=True)
    previous: list[str] = []
    manifest = out / MANIFEST
    if manifest.exists():
        previous = json.loads(manifest.read_text()).get("generated", [])
    for rel in sorted(staged.generated):
        source = staging / rel if (staging / rel).exists() else None
        content = source.read_bytes() if source else staged.generated[rel].encode()
        _write_if_changed(out / rel, content, rel, report)
    for rel in sorted(staged.owned):
        target = out / rel
        if target.exists():
            report.kept.append(rel)
        else:
            _write_if_changed(target, (staging / rel).read_bytes(), rel, report)
    for rel in sorted(staged.migrations):
        _write_if_changed(out / rel, (staging / rel).read_bytes(), rel, report)
    for rel in previous:
        if rel not in staged.generated and (out / rel).exists():
            (out / rel).unlink()
            report.removed.append(rel)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(
        json.dumps({"microforge": __version__, "generated": sorted(staged.generated)}, indent=2)
        + "\n"
    )


def _write_if_changed(target: Path, content: bytes, rel: str, report: GenerateReport) -> None:
    if target.exists() and target.read_bytes() == content:
        report.unchanged.append(rel)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(content)
    tmp.replace(target)
    report.written.append(rel)


__all__ = ["GenerateReport", "generate_project"]
