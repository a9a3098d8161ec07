"""The shipped JSON Schema is current, and the shipped specs validate against it.

`jsonschema` is not a dependency of the project, so the specs are checked with a small
validator for exactly the keywords the generated schema uses; a test fails if the schema
starts using a keyword it does not know, so no constraint is skipped silently.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import microforge.spec
from microforge.spec.schema import SCHEMA_ID, build_schema, render_schema, write_schema

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "schema" / "microforge.schema.json"
SPECS = [
    ROOT / "examples" / "shop" / "shop.yaml",
    Path(microforge.spec.__file__).parent / "starter.yaml",
    *sorted((ROOT / "examples").glob("*/*.yaml")),
]
REGENERATE = (
    "run `uv run python -m microforge.spec.schema` and commit schema/microforge.schema.json"
)

# Keywords the validator below checks, and those that only annotate.
CHECKED = {
    "$ref", "type", "properties", "additionalProperties", "required", "anyOf", "oneOf",
    "const", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum", "items",
    "exclusiveMinimum", "minItems", "uniqueItems", "minProperties", "propertyNames",
}  # fmt: skip
ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description", "default", "discriminator"}
TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


class Validator:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.root = schema

    def errors(self, instance: Any) -> list[str]:
        return self._check(instance, self.root, "$")

    def _resolve(self, ref: str) -> dict[str, Any]:
        assert ref.startswith("#/"), ref
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        assert isinstance(node, dict)
        return node

    def _check(self, value: Any, schema: dict[str, Any], at: str) -> list[str]:
        out: list[str] = []
        if "$ref" in schema:
            out += self._check(value, self._resolve(schema["$ref"]), at)
        if "type" in schema and not _is_type(value, schema["type"]):
            return [*out, f"{at}: expected {schema['type']}, got {value!r}"]
        if "const" in schema and value != schema["const"]:
            out.append(f"{at}: expected {schema['const']!r}")
        if "enum" in schema and value not in schema["enum"]:
            out.append(f"{at}: {value!r} is not one of {schema['enum']}")
        if "anyOf" in schema and all(self._check(value, s, at) for s in schema["anyOf"]):
            out.append(f"{at}: matches none of anyOf")
        if "oneOf" in schema:
            matches = sum(not self._check(value, s, at) for s in schema["oneOf"])
            if matches != 1:
                out.append(f"{at}: matches {matches} of oneOf")
        if isinstance(value, str):
            if "pattern" in schema and not re.search(schema["pattern"], value):
                out.append(f"{at}: {value!r} does not match {schema['pattern']}")
            if len(value) < schema.get("minLength", 0):
                out.append(f"{at}: too short")
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                out.append(f"{at}: too long")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                out.append(f"{at}: below {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                out.append(f"{at}: above {schema['maximum']}")
            if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
                out.append(f"{at}: not above {schema['exclusiveMinimum']}")
        if isinstance(value, list):
            if len(value) < schema.get("minItems", 0):
                out.append(f"{at}: too few items")
            if schema.get("uniqueItems") and len({json.dumps(v) for v in value}) != len(value):
                out.append(f"{at}: items are not unique")
            if "items" in schema:
                for i, item in enumerate(value):
                    out += self._check(item, schema["items"], f"{at}[{i}]")
        if isinstance(value, dict):
            out += self._check_object(value, schema, at)
        return out

    def _check_object(self, value: dict[str, Any], schema: dict[str, Any], at: str) -> list[str]:
        out: list[str] = []
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{at}: missing {key!r}")
        if len(value) < schema.get("minProperties", 0):
            out.append(f"{at}: too few properties")
        for key, item in value.items():
            if "propertyNames" in schema:
                out += self._check(key, schema["propertyNames"], f"{at}.{key}(name)")
            if key in properties:
                out += self._check(item, properties[key], f"{at}.{key}")
            else:
                extra = schema.get("additionalProperties", True)
                if extra is False:
                    out.append(f"{at}: unexpected key {key!r}")
                elif isinstance(extra, dict):
                    out += self._check(item, extra, f"{at}.{key}")
        return out


def _is_type(value: Any, expected: str | list[str]) -> bool:
    if isinstance(expected, list):
        return any(_is_type(value, e) for e in expected)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, TYPES[expected])


def _as_json(path: Path) -> Any:
    """The spec as an editor sees it: YAML dates are plain strings in JSON."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))

    def plain(value: Any) -> Any:
        if isinstance(value, (dt.date, dt.datetime)):
            return value.isoformat()
        raise TypeError(type(value))

    return json.loads(json.dumps(data, default=plain))


def _keywords(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for child in value.values():
                    _keywords(child, found)
            elif key not in ("discriminator", "default", "const", "enum"):
                _keywords(value, found)
    elif isinstance(node, list):
        for item in node:
            _keywords(item, found)
    return found


def test_the_shipped_schema_is_current() -> None:
    assert SHIPPED.exists(), f"schema/microforge.schema.json is missing: {REGENERATE}"
    shipped = SHIPPED.read_text(encoding="utf-8")
    assert json.loads(shipped) == build_schema(), f"the schema is out of date: {REGENERATE}"
    assert shipped == render_schema(), (
        f"the schema file is not formatted as generated: {REGENERATE}"
    )


def test_the_schema_describes_itself() -> None:
    schema = build_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID
    assert schema["title"]
    assert schema["description"]
    assert set(schema["required"]) == {"name", "services"}


def test_every_option_is_documented() -> None:
    schema = build_schema()
    for name, definition in schema["$defs"].items():
        for option, prop in definition.get("properties", {}).items():
            if option != "type":
                assert prop.get("description"), f"{name}.{option} has no description"


def test_the_validator_knows_every_keyword_of_the_schema() -> None:
    unknown = _keywords(build_schema(), set()) - CHECKED - ANNOTATIONS
    assert not unknown, f"teach the test validator these keywords: {sorted(unknown)}"


@pytest.mark.parametrize("path", sorted(set(SPECS)), ids=lambda p: p.name)
def test_shipped_specs_validate_against_the_schema(path: Path) -> None:
    errors = Validator(build_schema()).errors(_as_json(path))
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"name": "shop"}, "missing 'services'"),
        ({"name": "shop", "services": {}}, "too few properties"),
        ({"name": "shop", "servics": {}, "services": {}}, "unexpected key 'servics'"),
        (
            {
                "name": "shop",
                "services": {"c": {"entities": {"product": {"fields": {"a": "text"}}}}},
            },
            "does not match",
        ),
        (
            {"name": "shop", "services": {"c": {"entities": {"P": {"fields": {"a": "strng"}}}}}},
            "matches none of anyOf",
        ),
        (
            {"name": "shop", "services": {"c": {"entities": {"P": {"fields": {"a": "enum"}}}}}},
            "matches none of anyOf",
        ),
        (
            {
                "name": "shop",
                "services": {
                    "c": {"entities": {"P": {"fields": {"a": {"type": "text", "scale": 2}}}}}
                },
            },
            "matches none of anyOf",
        ),
    ],
)
def test_the_schema_rejects_bad_specs(spec: dict[str, Any], problem: str) -> None:
    errors = Validator(build_schema()).errors(spec)
    assert any(problem in e for e in errors), errors


def test_write_schema_creates_the_file(tmp_path: Path) -> None:
    target = write_schema(tmp_path / "out" / "schema.json")
    assert json.loads(target.read_text(encoding="utf-8")) == build_schema()


def test_the_module_writes_to_a_given_path(tmp_path: Path) -> None:
    from microforge.spec.schema import main

    assert main([str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "s.json").read_text(encoding="utf-8") == render_schema()


# --- docs/spec.md ---------------------------------------------------------------------------

DOCS = ROOT / "docs" / "spec.md"
REGENERATE_DOCS = "run `uv run python -m microforge.spec.reference` and commit docs/spec.md"


def test_the_docs_reference_matches_the_schema() -> None:
    from microforge.spec.reference import generated_section, render_reference

    section = generated_section(DOCS.read_text(encoding="utf-8"))
    assert section == render_reference(build_schema()), f"docs/spec.md drifted: {REGENERATE_DOCS}"


def test_the_docs_list_every_reserved_name() -> None:
    from microforge.runtime.db import SUPPORTED_DRIVERS
    from microforge.spec.validate import RESERVED_FIELDS, RESERVED_SERVICES

    text = DOCS.read_text(encoding="utf-8")
    missing = {
        n for n in RESERVED_FIELDS | RESERVED_SERVICES | SUPPORTED_DRIVERS if f"`{n}`" not in text
    }
    assert not missing, f"docs/spec.md does not mention: {sorted(missing)}"


def test_the_docs_cover_every_field_type() -> None:
    from microforge.spec.model import FIELD_TYPES

    text = DOCS.read_text(encoding="utf-8")
    assert all(f"| `{t}` |" in text for t in FIELD_TYPES)


def test_the_reference_module_rewrites_only_its_section(tmp_path: Path) -> None:
    from microforge.spec.reference import BEGIN, END, main, render_reference

    doc = tmp_path / "spec.md"
    old = "an outdated table"
    doc.write_text(f"# Title\n\nprose\n\n{BEGIN}\n{old}\n{END}\n\nafter\n", encoding="utf-8")
    assert main([str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\nprose\n\n")
    assert text.endswith(f"{END}\n\nafter\n")
    assert render_reference(build_schema()) in text
    assert old not in text


def test_the_reference_needs_its_markers(tmp_path: Path) -> None:
    from microforge.spec.reference import update_docs

    doc = tmp_path / "spec.md"
    doc.write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="markers"):
        update_docs(doc)
