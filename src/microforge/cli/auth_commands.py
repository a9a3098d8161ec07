"""`microforge keys ...` and `microforge users ...`: operating the identity service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from microforge.spec import Spec

keys_app = typer.Typer(help="Signing keys of the identity service.", no_args_is_help=True)
users_app = typer.Typer(help="Users of the identity service.", no_args_is_help=True)

ProjectArg = Annotated[
    Path, typer.Argument(help="A spec file (YAML) or a generated project folder.")
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Output folder (default: build/<name>).")
]


def _identity(spec: Spec) -> str:
    from .main import _fail

    if spec.auth is None:
        raise _fail("The spec has no auth section, so there is no identity service.", 2)
    return spec.auth.service


@keys_app.command("rotate")
def rotate(
    project: ProjectArg,
    out: OutOpt = None,
    keep: Annotated[int, typer.Option(min=2, help="Keys kept after rotating.")] = 3,
) -> None:
    """Add a new signing key (it signs from the next restart) and drop the oldest.

    Older keys stay published in the JWKS so tokens they signed verify until they expire.
    """
    from microforge.runtime.auth.keys import KeyStore, KeyStoreError

    from .main import _fail, _generate, _say, _service_env
    from .up import development_keys

    spec, folder = _generate(project, out)
    _identity(spec)
    directory = development_keys(spec, folder, _service_env(folder))
    assert directory is not None
    try:
        store = KeyStore(directory)
        kid = store.rotate()
        removed = store.prune(keep)
    except KeyStoreError as exc:
        raise _fail(str(exc)) from None
    _say(f"New signing key {kid} in {directory}.", color="green")
    for old in removed:
        _say(f"  removed {old}")
    _say("Restart the identity service to sign with it; verifiers pick it up by themselves.")


@users_app.command("create")
def create(
    project: ProjectArg,
    email: Annotated[str, typer.Option(help="The login e-mail.")],
    role: Annotated[list[str], typer.Option(help="A role to grant (repeat for more).")],
    field: Annotated[
        list[str] | None,
        typer.Option(help="Another field of the user entity as name=value (repeatable)."),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input instead of a prompt.")
    ] = False,
    tenant: Annotated[
        str | None,
        typer.Option(help="The user's tenant (with auth.tenancy; default: a new tenant)."),
    ] = None,
    out: OutOpt = None,
) -> None:
    """Create a user with the given roles, e.g. the first admin."""
    from microforge.runner.project_tasks import TaskError, create_user
    from microforge.runtime.ids import uuid7

    from .main import _fail, _generate, _migrate, _say, _task_env

    fields: dict[str, str] = {}
    for item in field or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise _fail(f"--field {item!r}: expected name=value", 2)
        fields[name] = value
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    spec, folder = _generate(project, out)
    service = _identity(spec)
    assert spec.auth is not None
    if tenant is not None and not spec.auth.tenancy:
        raise _fail("--tenant needs `auth.tenancy: true` in the spec.", 2)
    if spec.auth.tenancy and tenant is None:
        tenant = str(uuid7())
    _migrate(spec, folder)
    try:
        user_id = create_user(
            (folder / "services" / service).resolve(),
            f"{service}_service",
            _task_env(folder),
            email=email,
            password=password,
            roles=role,
            fields=fields,
            tenant=tenant,
        )
    except TaskError as exc:
        raise _fail(f"Cannot create the user: {exc}") from None
    in_tenant = f" in tenant {tenant}" if tenant else ""
    _say(
        f"Created user {user_id} ({email}) with roles {', '.join(role)}{in_tenant}.",
        color="green",
    )
