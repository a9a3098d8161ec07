"""The command line: clear messages and exit codes, never a traceback for a user mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.project import SHOP
from typer.testing import CliRunner

from microforge import __version__
from microforge.cli.main import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"microforge {__version__}"


def test_init_writes_a_starter_that_checks_and_generates(tmp_path: Path) -> None:
    folder = tmp_path / "my-shop"
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    spec = folder / "microforge.yaml"
    assert "\nname: my_shop\n" in spec.read_text()
    assert runner.invoke(app, ["check", str(spec)]).exit_code == 0
    again = runner.invoke(app, ["init", str(folder)])
    assert again.exit_code == 2
    assert "already exists" in again.output
    out = tmp_path / "out"
    generated = runner.invoke(app, ["generate", str(spec), "-o", str(out)])
    assert generated.exit_code == 0, generated.output
    assert (out / "microforge.yaml").read_text() == spec.read_text()


def test_check_reports_every_problem_and_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: shop\n"
        "services:\n"
        "  catalog:\n"
        "    entities:\n"
        "      Product:\n"
        "        fileds:\n"
        "          name: string\n"
    )
    out = tmp_path / "out"
    for command in (["check", str(spec)], ["generate", str(spec), "-o", str(out)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1
        assert f"{spec}:6:9: services.catalog.entities.Product.fileds" in result.output
        assert "did you mean 'fields'" in result.output
        assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "missing.yaml"], "file not found"),
        (["generate", "missing.yaml"], "does not exist"),
        (["up", "."], "without microforge.yaml"),
        (["up", str(SHOP), "--port", "70000"], "between 1 and 65535"),
    ],
)
def test_usage_mistakes_are_explained(args: list[str], message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code in (1, 2), result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_generate_reports_what_it_kept(tmp_path: Path) -> None:
    out = tmp_path / "shop"
    first = runner.invoke(app, ["generate", str(SHOP), "-o", str(out)])
    assert first.exit_code == 0, first.output
    assert "migration for catalog" in first.output
    second = runner.invoke(app, ["generate", str(out)])
    assert second.exit_code == 0, second.output
    assert "0 written" in second.output
    assert "of your files kept" in second.output


def test_bad_database_urls_in_the_environment_are_refused_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATALOG_DATABASE_URL", "postgres://db/catalog")
    result = runner.invoke(app, ["migrate", str(SHOP), "-o", str(tmp_path / "shop")])
    assert result.exit_code == 2
    assert "CATALOG_DATABASE_URL: unsupported driver 'postgres'; use 'postgresql+asyncpg'" in (
        result.output
    )
    assert not (tmp_path / "shop" / "data").exists()
