"""The shipped specs load, and the showcase exercises every field type and relation kind."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import microforge.spec
from microforge.spec import Spec, load_spec
from microforge.spec.model import FIELD_TYPES, ReferenceField, RelationField

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop" / "shop.yaml"
STARTER = Path(microforge.spec.__file__).parent / "starter.yaml"
CARDINALITIES = get_args(RelationField.model_fields["cardinality"].annotation)
ON_DELETE = get_args(get_args(RelationField.model_fields["on_delete"].annotation)[0])


def relation_kinds(spec: Spec) -> set[str]:
    """Cardinalities used, plus 'self' and 'reference' when a spec has them."""
    kinds: set[str] = set()
    for service in spec.services.values():
        for entity_name, entity in service.entities.items():
            for field in entity.fields.values():
                if isinstance(field, RelationField):
                    kinds.add(field.cardinality)
                    if field.to == entity_name:
                        kinds.add("self")
                elif isinstance(field, ReferenceField):
                    kinds.add("reference")
    return kinds


def field_types(spec: Spec) -> set[str]:
    return {
        field.type
        for service in spec.services.values()
        for entity in service.entities.values()
        for field in entity.fields.values()
    }


def test_the_starter_loads() -> None:
    spec = load_spec(STARTER)
    assert len(spec.services) == 2
    assert "reference" in relation_kinds(spec)


def test_the_shop_loads() -> None:
    spec = load_spec(SHOP)
    assert {"identity", "catalog", "inventory", "orders", "payments", "notifications"} <= set(
        spec.services
    )


def test_the_shop_uses_every_field_type() -> None:
    missing = set(FIELD_TYPES) - field_types(load_spec(SHOP))
    assert not missing, f"examples/shop/shop.yaml does not use: {sorted(missing)}"


def test_the_shop_uses_every_relation_kind() -> None:
    wanted = {*CARDINALITIES, "self", "reference"}
    assert CARDINALITIES  # the model still spells cardinalities as a Literal
    missing = wanted - relation_kinds(load_spec(SHOP))
    assert not missing, f"examples/shop/shop.yaml does not use: {sorted(missing)}"


def test_the_shop_uses_every_on_delete_rule() -> None:
    used = {
        field.on_delete
        for service in load_spec(SHOP).services.values()
        for entity in service.entities.values()
        for field in entity.fields.values()
        if isinstance(field, RelationField) and field.on_delete
    }
    assert used == set(ON_DELETE)


def test_the_shop_shows_entity_options() -> None:
    entities = [e for s in load_spec(SHOP).services.values() for e in s.entities.values()]
    assert any(e.soft_delete for e in entities)
    assert any(e.unique_together for e in entities)
    assert any(e.indexes for e in entities)
    assert any(e.seed for e in entities)
    assert {e.id for e in entities} == {"uuid", "integer"}


def test_the_shop_references_cross_services() -> None:
    spec = load_spec(SHOP)
    for name, service in spec.services.items():
        for entity in service.entities.values():
            for field in entity.fields.values():
                if isinstance(field, ReferenceField):
                    target_service, _, target = field.to.partition(".")
                    assert target_service != name
                    assert target in spec.services[target_service].entities


def test_the_example_at_the_top_of_the_docs_loads() -> None:
    from microforge.spec import load_spec_text

    docs = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    first = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = load_spec_text(first, "docs/spec.md")
    assert "catalog" in spec.services
