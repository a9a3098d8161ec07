"""The JSON Schema of the spec, for editors (completion, hover docs) and other tools.

Generated from the pydantic models, then adjusted where the models accept more than their
own schema says (the `name: string` shorthand) and where validate.py adds rules an editor can
check too (name patterns, non-empty maps, enum values).

    python -m microforge.spec.schema [PATH]     # default: schema/microforge.schema.json
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from .model import FIELD_TYPES, Spec

SCHEMA_ID = "https://microforge.dev/schema/microforge.schema.json"
DEFAULT_PATH = Path("schema/microforge.schema.json")
LOWER_NAME = "^[a-z][a-z0-9_]*$"
ENTITY_NAME = "^[A-Z][A-Za-z0-9]*$"
# Types that are complete without options, so `name: <type>` is valid on its own.
SHORTHAND_TYPES = [
    t for t in FIELD_TYPES if t not in ("enum", "enum_list", "relation", "reference")
]


def build_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a microforge spec file."""
    generated = copy.deepcopy(Spec.model_json_schema())
    defs: dict[str, Any] = generated.pop("$defs")
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "microforge spec",
        "description": (
            "One domain spec for microforge: services (bounded contexts, one database "
            "each) made of entities made of fields. See docs/spec.md."
        ),
        **{k: v for k, v in generated.items() if k != "title"},
    }

    services = schema["properties"]["services"]
    services["propertyNames"] = {"pattern": LOWER_NAME}
    services["minProperties"] = 1

    entities = defs["Service"]["properties"]["entities"]
    entities["propertyNames"] = {"pattern": ENTITY_NAME}
    entities["minProperties"] = 1

    fields = defs["Entity"]["properties"]["fields"]
    union = fields["additionalProperties"]
    defs["Field"] = {
        "title": "Field",
        "description": "A field; `type` selects which options apply.",
        **union,
    }
    fields["additionalProperties"] = {
        "anyOf": [
            {"$ref": "#/$defs/Field"},
            {
                "title": "Field type shorthand",
                "description": "`name: string` means `name: {type: string}`.",
                "type": "string",
                "enum": SHORTHAND_TYPES,
            },
        ]
    }
    fields["propertyNames"] = {"pattern": LOWER_NAME}
    fields["minProperties"] = 1

    # `idempotency: required` and `idempotency: true|false` are shorthands (model.py).
    idempotency = defs["Entity"]["properties"]["idempotency"]
    description = idempotency.pop("description")
    default = idempotency.pop("default", None)
    reference = dict(idempotency)
    idempotency.clear()
    idempotency["description"] = description
    if default is not None:
        idempotency["default"] = default
    idempotency["anyOf"] = [
        reference,
        {
            "title": "POST mode shorthand",
            "description": "`idempotency: required` means `idempotency: {create: required}`.",
            "type": "string",
            "enum": ["off", "optional", "required"],
        },
        {"title": "On or off", "description": "true: the defaults; false: off.", "type": "boolean"},
    ]

    for name in ("EnumField", "EnumListField"):
        values = defs[name]["properties"]["values"]
        values["minItems"] = 1
        values["uniqueItems"] = True
        values["items"] = {"type": "string", "minLength": 1, "maxLength": 64}

    for name in ("unique_together", "indexes"):
        group = defs["Entity"]["properties"][name]
        group["items"]["minItems"] = 1
        group["items"]["uniqueItems"] = True
        group["items"]["items"]["pattern"] = LOWER_NAME

    schema["$defs"] = dict(sorted(defs.items()))
    return schema


def render_schema() -> str:
    """The schema as the text of the shipped file (stable, diff-friendly)."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(path: str | Path = DEFAULT_PATH) -> Path:
    """Write the schema file (creating its folder) and return where it went."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_schema(), encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or any(a in ("-h", "--help") for a in args):
        print("usage: python -m microforge.spec.schema [PATH]", file=sys.stderr)
        return 2
    target = write_schema(args[0] if args else DEFAULT_PATH)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
