"""`microforge up`: every service and the gateway as child processes of one command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from microforge.runner.ports import free_port, port_is_free
from microforge.runner.project_tasks import TaskError
from microforge.runner.supervisor import Interrupted, ProcessSpec, ReadinessError, Supervisor
from microforge.runtime.auth.keys import KeyStore
from microforge.runtime.auth.wiring import project_audience, project_issuer
from microforge.runtime.db import database_url_problem
from microforge.spec import Spec

READY_TIMEOUT_S = 60.0


def _service_ports(names: list[str], host: str, gateway_port: int) -> dict[str, int]:
    """Services take the ports after the gateway's, or any free one when taken."""
    ports: dict[str, int] = {}
    candidate = gateway_port + 1
    for name in names:
        while candidate <= 65535 and not port_is_free(candidate, host):
            candidate += 1
        ports[name] = candidate if candidate <= 65535 else free_port(host)
        candidate += 1
    return ports


def _uvicorn(app: str, host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", app,
        "--host", host, "--port", str(port),
        "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def development_keys(spec: Spec, project: Path, env: dict[str, str]) -> Path | None:
    """The identity service's signing keys: made under the data folder on first use.

    Only when the environment does not point the service at keys of its own.
    """
    if spec.auth is None:
        return None
    configured = env.get(f"{spec.auth.service.upper()}_AUTH_KEY_DIR")
    if configured:
        return Path(configured)
    directory = _data_dir(project, env) / "keys" / spec.auth.service
    KeyStore.ensure(directory)
    return directory


def _data_dir(project: Path, env: dict[str, str]) -> Path:
    return Path(env["MICROFORGE_DATA_DIR"]) if env.get("MICROFORGE_DATA_DIR") else project / "data"


def client_keys(spec: Spec, project: Path, env: dict[str, str]) -> dict[str, str]:
    """Each service's own API key (with its spec `client_roles`), kept under the data folder."""
    from microforge.runner.project_tasks import provision_client_keys

    if spec.auth is None:
        return {}
    data = _data_dir(project, env)
    identity = spec.auth.service
    return provision_client_keys(
        (project / "services" / identity).resolve(),
        f"{identity}_service",
        {"MICROFORGE_DATA_DIR": str(data)},
        {name: list(service.client_roles) for name, service in spec.services.items()},
        data / "keys" / "clients",
    )


def _auth_env(
    spec: Spec, host: str, ports: dict[str, int], env: dict[str, str], keys: dict[str, str]
) -> dict[str, str]:
    """Every service (and the gateway) fetches the identity service's public keys; every
    service calls the others with its own key."""
    if spec.auth is None:
        return {}
    identity = f"http://{host}:{ports[spec.auth.service]}"
    peers = json.dumps({name: f"http://{host}:{port}" for name, port in ports.items()})
    values: dict[str, str] = {}
    for name in spec.services:
        prefix = name.upper()
        values[f"{prefix}_AUTH_JWKS_URL"] = f"{identity}/.well-known/jwks.json"
        values[f"{prefix}_AUTH_TOKEN_URL"] = f"{identity}/auth/token"
        values[f"{prefix}_PEER_URLS"] = peers
        if name in keys:
            values[f"{prefix}_AUTH_API_KEY"] = keys[name]
    values = {variable: env.get(variable, value) for variable, value in values.items()}
    # Clients reach the identity service through the gateway, which appends the client's
    # address to X-Forwarded-For: login throttling per address must read that one hop.
    hops = f"{spec.auth.service.upper()}_AUTH_TRUSTED_PROXY_HOPS"
    values[hops] = env.get(hops, "1")
    return values


def build_specs(
    spec: Spec,
    project: Path,
    host: str,
    port: int,
    env: dict[str, str],
    keys: dict[str, str] | None = None,
) -> tuple[list[ProcessSpec], dict[str, int]]:
    ports = _service_ports(list(spec.services), host, port)
    env = {**env, **_auth_env(spec, host, ports, env, keys or {})}
    children = []
    for name, service_port in ports.items():
        service_dir = (project / "services" / name).resolve()
        children.append(
            ProcessSpec(
                name=name,
                argv=_uvicorn(f"{name}_service.main:app", host, service_port),
                cwd=service_dir,
                env={**env, "PYTHONPATH": str(service_dir)},
                ready_url=f"http://{host}:{service_port}/health/ready",
            )
        )
    routes = [arg for n, p in ports.items() for arg in ("--route", f"{n}=http://{host}:{p}")]
    gateway = [sys.executable, "-m", "microforge.gateway", "--host", host, "--port", str(port)]
    if spec.auth is not None:
        # Defence in depth: a forged or expired token is refused at the edge already.
        identity = f"http://{host}:{ports[spec.auth.service]}"
        gateway += [
            "--jwks-url", f"{identity}/.well-known/jwks.json",
            "--issuer", project_issuer(spec.name),
            "--audience", project_audience(spec.name),
        ]  # fmt: skip
    children.append(
        ProcessSpec(
            name="gateway",
            argv=[*gateway, "--title", spec.name, *routes],
            cwd=project.resolve(),
            env=env,
            ready_url=f"http://{host}:{port}/health/live",
        )
    )
    return children, ports


def environment_problems(spec: Spec, env: dict[str, str]) -> list[str]:
    """Check database URLs set in the environment before any process starts."""
    problems = []
    for name in spec.services:
        variable = f"{name.upper()}_DATABASE_URL"
        value = env.get(variable)
        problem = database_url_problem(value) if value is not None else None
        if problem is not None:
            problems.append(f"{variable}: {problem}")
    return problems


def run_up(spec: Spec, project: Path, host: str, port: int, env: dict[str, str]) -> int:
    if not port_is_free(port, host):
        typer.secho(f"Port {port} on {host} is in use; pass --port.", err=True, fg="red")
        return 2
    development_keys(spec, project, env)
    try:
        keys = client_keys(spec, project, env)
    except TaskError as exc:
        typer.secho(f"Cannot provision the services' API keys: {exc}", err=True, fg="red")
        return 1
    children, ports = build_specs(spec, project, host, port, env, keys)
    supervisor = Supervisor()
    try:
        supervisor.start(children)
        supervisor.wait_ready(READY_TIMEOUT_S)
    except ReadinessError as exc:
        typer.secho(str(exc), err=True, fg="red")
        supervisor.stop()
        return 1
    except Interrupted:
        return supervisor.stop()
    except BaseException:
        supervisor.stop()
        raise
    base = f"http://{host}:{port}"
    typer.secho(f"\n{spec.name} is up. Gateway: {base}/", fg="green", bold=True)
    for name, service_port in ports.items():
        typer.echo(f"  {name:<16} {base}/{name}/docs   (direct: http://{host}:{service_port}/docs)")
    typer.echo("Press Ctrl-C to stop.\n")
    sys.stdout.flush()
    return supervisor.run_forever()
