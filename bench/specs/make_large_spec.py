"""Write a 50-entity spec (5 services x 10 entities) for timing `microforge generate`.

Every entity mixes scalar field types; most have relations inside their service
(many_to_one, one_to_one, many_to_many, self relations) and references to the previous
service. The output is deterministic.

    python bench/specs/make_large_spec.py -o /tmp/large.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

SERVICES = ("accounts", "catalog", "inventory", "orders", "shipping")
ENTITIES_PER_SERVICE = 10


def _entity_name(service: int, index: int) -> str:
    return f"{SERVICES[service].capitalize()}Item{index:02d}"


def _scalar_fields(index: int) -> dict[str, Any]:
    """A different mix of scalar types per entity, 8 to 11 fields."""
    fields: dict[str, Any] = {
        "name": {"type": "string", "max_length": 120, "searchable": True},
        "code": {
            "type": "string",
            "max_length": 32,
            "unique": True,
            "pattern": "^[A-Z0-9-]+$",
        },
        "amount": {"type": "decimal", "precision": 12, "scale": 2, "min": 0},
        "quantity": {"type": "integer", "min": 0, "default": 0},
        "state": {
            "type": "enum",
            "values": ["new", "open", "closed", "archived"],
            "default": "new",
            "indexed": True,
        },
        "active": {"type": "boolean", "default": True},
        "notes": {"type": "text", "required": False},
        "happened_at": {"type": "datetime", "required": False},
    }
    extras: list[tuple[str, dict[str, Any]]] = [
        ("email", {"type": "email", "required": False}),
        ("homepage", {"type": "url", "required": False}),
        ("weight", {"type": "float", "min": 0, "required": False}),
        ("due_on", {"type": "date", "required": False}),
        ("external_key", {"type": "uuid", "required": False, "unique": True}),
        ("big_number", {"type": "bigint", "required": False}),
        ("attributes", {"type": "json", "required": False}),
        ("flags", {"type": "enum_list", "values": ["a", "b", "c"], "required": False}),
    ]
    for offset in range(index % 4):
        name, spec = extras[(index + offset * 3) % len(extras)]
        fields[name] = spec
    return fields


def _relations(service: int, index: int) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if index > 0:
        parent = _entity_name(service, index - 1)
        fields["owner"] = {"type": "relation", "to": parent, "on_delete": "cascade"}
    if index > 1 and index % 3 == 0:
        fields["primary"] = {
            "type": "relation",
            "to": _entity_name(service, index - 2),
            "cardinality": "one_to_one",
            "required": False,
        }
    if index > 2 and index % 4 == 1:
        fields["links"] = {
            "type": "relation",
            "to": _entity_name(service, 0),
            "cardinality": "many_to_many",
        }
    if index % 5 == 2:
        fields["parent"] = {
            "type": "relation",
            "to": _entity_name(service, index),
            "required": False,
            "on_delete": "set_null",
        }
    if service > 0 and index % 2 == 0:
        other = f"{SERVICES[service - 1]}.{_entity_name(service - 1, index)}"
        fields["origin_id"] = {"type": "reference", "to": other, "required": False}
    return fields


def build_spec() -> dict[str, Any]:
    services: dict[str, Any] = {}
    for s, service in enumerate(SERVICES):
        entities: dict[str, Any] = {}
        for i in range(ENTITIES_PER_SERVICE):
            entity: dict[str, Any] = {
                "description": f"Entity {i} of {service}.",
                "fields": {**_scalar_fields(i), **_relations(s, i)},
            }
            if i % 3 == 0:
                entity["id"] = "integer"
            if i % 4 == 2:
                entity["soft_delete"] = True
            if i % 2 == 1:
                entity["indexes"] = [["state", "amount"]]
            entities[_entity_name(s, i)] = entity
        services[service] = {"description": f"The {service} service.", "entities": entities}
    return {
        "name": "large",
        "description": "A 50-entity spec for timing microforge generate.",
        "version": "0.1.0",
        "services": services,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    text = yaml.safe_dump(build_spec(), sort_keys=False, width=100)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
