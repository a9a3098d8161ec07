"""`microforge users create` and `microforge keys rotate`."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.project import SHOP
from typer.testing import CliRunner

from microforge.cli.main import app

runner = CliRunner()
PASSWORD = "a long enough passphrase"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("auth-cli") / "shop"
    result = runner.invoke(app, ["generate", str(SHOP), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _create(project: Path, *args: str, password: str = PASSWORD) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["users", "create", str(project), "--password-stdin", *args],
        input=password + "\n",
        env={"MICROFORGE_DATA_DIR": str(project / "data")},
    )
    return result.exit_code, result.output


def test_users_create_makes_an_admin_who_can_log_in(project: Path) -> None:
    code, output = _create(
        project, "--email", "Root@Example.com", "--role", "admin", "--field", "display_name=Root"
    )
    assert code == 0, output
    assert "Created user" in output
    again, output = _create(
        project, "--email", "root@example.com", "--role", "admin", "--field", "display_name=R"
    )
    assert again == 1
    assert "exists already" in output


@pytest.mark.parametrize(
    ("args", "password", "words"),
    [
        (["--role", "root", "--field", "display_name=X"], PASSWORD, "unknown roles: root"),
        (["--role", "admin", "--field", "display_name=X"], "short", "at least 12"),
        (["--role", "admin"], PASSWORD, "display_name"),
        (["--role", "admin", "--field", "display_name"], PASSWORD, "expected name=value"),
        (["--role", "admin", "--field", "display_name=X", "--tenant", "t"], PASSWORD, "tenancy"),
    ],
)
def test_users_create_explains_mistakes(
    project: Path, args: list[str], password: str, words: str
) -> None:
    code, output = _create(project, "--email", "x@example.com", *args, password=password)
    assert code in (1, 2), output
    assert words in output
    assert "Traceback" not in output


def test_users_create_needs_an_auth_section(tmp_path: Path) -> None:
    spec = tmp_path / "plain.yaml"
    spec.write_text(
        "name: plain\nservices:\n  notes:\n    entities:\n"
        "      Note:\n        fields:\n          text: string\n"
    )
    code, output = _create(spec, "--email", "a@example.com", "--role", "admin")
    assert code == 2
    assert "no auth section" in output


def test_keys_rotate_adds_a_key_and_keeps_the_previous_one_published(project: Path) -> None:
    env = {"MICROFORGE_DATA_DIR": str(project / "data")}
    first = runner.invoke(app, ["keys", "rotate", str(project)], env=env)
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["keys", "rotate", str(project)], env=env)
    assert second.exit_code == 0, second.output
    from microforge.runtime.auth.keys import KeyStore

    store = KeyStore(project / "data" / "keys" / "identity")
    kids = [key.kid for key in store.keys]
    assert len(kids) == 3  # the first key, plus one per rotation
    assert kids[0] in second.output
    assert {k["kid"] for k in store.jwks()["keys"]} == set(kids)
