"""Bad specs: every problem names the file, the exact line, the dotted path and what is wrong.

Each case is a small spec file. The line an error must point at carries the marker `#<`
(a YAML comment), unless the case gives the line explicitly; the test asserts the issue's
file, line, path and the key words of its message, and the `file:line:col: path: message`
format of the rendered error.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from microforge.spec import SpecError, SpecIssue, load_spec, load_spec_text

MARK = "#<"


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    path: str
    words: tuple[str, ...]
    line: int | None = None  # when the marker cannot be used
    count: int = 1  # issues the file must produce in total


def case(
    id: str, text: str, path: str, *words: str, line: int | None = None, count: int = 1
) -> Case:
    return Case(id, textwrap.dedent(text).lstrip("\n"), path, words, line, count)


F = "services.catalog.entities.Product.fields"
P = "services.catalog.entities.Product"

CASES = [
    # --- YAML itself --------------------------------------------------------------------
    case(
        "yaml-bad-indentation",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  name: string
                 price: decimal #<
        """,
        "<root>",
        "invalid YAML",
        "indentation",
    ),
    case(
        "yaml-unclosed-bracket",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  status: {type: enum, values: [draft, active} #<
                  name: string
        """,
        "<root>",
        "invalid YAML",
        "'['",
        "never closed",
    ),
    case(
        "yaml-unclosed-bracket-at-end-of-file",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                indexes: [[name #<
        """,
        "<root>",
        "never closed",
    ),
    case(
        "yaml-tab-indentation",
        "name: shop\nservices:\n  catalog:\n\tentities: {} #<\n",
        "<root>",
        "tab",
        "spaces",
    ),
    case(
        "yaml-unclosed-quote",
        """
        name: shop
        description: "an unfinished sentence #<
        services: {}
        """,
        "<root>",
        "never closed",
        "quote",
    ),
    case("empty-file", "", "<root>", "empty", "'name'", "'services'", line=1),
    case("only-comments", "# nothing here yet\n", "<root>", "empty", line=1),
    case(
        "top-level-is-a-list",
        """
        - name: shop #<
        - services: {}
        """,
        "<root>",
        "expected a mapping",
        "got a list",
    ),
    case("top-level-is-a-scalar", "just some words #<\n", "<root>", "expected a mapping"),
    case(
        "duplicate-yaml-key",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  name: string
                  price: decimal
                  name: text #<
        """,
        f"{F}.name",
        "duplicate key 'name'",
    ),
    # --- unknown keys at every level, with did-you-mean ---------------------------------
    case(
        "unknown-top-level-key",
        """
        name: shop
        servces: {} #<
        """,
        "servces",
        "unknown key 'servces'",
        "did you mean 'services'",
    ),
    case(
        "unknown-service-key",
        """
        name: shop
        services:
          catalog:
            databse: sqlite #<
            entities:
              Product: {fields: {name: string}}
        """,
        "services.catalog.databse",
        "unknown key 'databse'",
        "did you mean 'database'",
    ),
    case(
        "unknown-entity-key-fileds",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                soft_delete: true
                fileds: #<
                  name: string
        """,
        f"{P}.fileds",
        "unknown key 'fileds'",
        "did you mean 'fields'",
    ),
    case(
        "unknown-string-option-max-lenght",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  name:
                    type: string
                    max_lenght: 80 #<
        """,
        f"{F}.name.max_lenght",
        "unknown key 'max_lenght'",
        "did you mean 'max_length'",
    ),
    case(
        "option-of-another-type-lists-the-allowed-ones",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  paid: {type: boolean, scale: 2} #<
        """,
        f"{F}.paid.scale",
        "unknown key 'scale' for a boolean field",
        "an option of: decimal",
        "expected one of:",
        "required",
    ),
    # --- field types ----------------------------------------------------------------------
    case(
        "unknown-field-type",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  name:
                    type: strng #<
                    max_length: 80
        """,
        f"{F}.name.type",
        "unknown field type 'strng'",
        "did you mean 'string'",
    ),
    case(
        "unknown-field-type-in-shorthand",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  name: string
                  price: decimel #<
        """,
        f"{F}.price.type",
        "unknown field type 'decimel'",
        "did you mean 'decimal'",
    ),
    case(
        "missing-field-type",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  name: #<
                    max_length: 80
        """,
        f"{F}.name",
        "missing 'type'",
        "string",
    ),
    case(
        "field-is-a-list",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  name: [string] #<
        """,
        f"{F}.name",
        "expected a field type name",
        "got a list",
    ),
    # --- relations and references ----------------------------------------------------------
    case(
        "relation-to-missing-entity",
        """
        name: shop
        services:
          catalog:
            entities:
              Category: {fields: {name: string}}
              Product:
                fields:
                  category:
                    type: relation
                    to: Categry #<
        """,
        f"{F}.category.to",
        "unknown entity 'Categry'",
        "did you mean 'Category'",
    ),
    case(
        "relation-to-entity-of-another-service",
        """
        name: shop
        services:
          identity:
            entities:
              User: {fields: {email: email}}
          catalog:
            entities:
              Product:
                fields:
                  owner: {type: relation, to: User} #<
        """,
        f"{F}.owner.to",
        "unknown entity 'User'",
        "lives in service 'identity'",
        "type: reference, to: identity.User",
    ),
    case(
        "reference-to-missing-service",
        """
        name: shop
        services:
          identity:
            entities:
              User: {fields: {email: email}}
          catalog:
            entities:
              Product:
                fields:
                  owner_id:
                    type: reference
                    to: identiy.User #<
        """,
        f"{F}.owner_id.to",
        "unknown service 'identiy'",
        "did you mean 'identity'",
    ),
    case(
        "reference-to-missing-entity",
        """
        name: shop
        services:
          identity:
            entities:
              User: {fields: {email: email}}
          catalog:
            entities:
              Product:
                fields:
                  owner_id: {type: reference, to: identity.Users} #<
        """,
        f"{F}.owner_id.to",
        "service 'identity' has no entity 'Users'",
        "did you mean 'User'",
    ),
    case(
        "reference-to-own-service",
        """
        name: shop
        services:
          catalog:
            entities:
              Category: {fields: {name: string}}
              Product:
                fields:
                  category_ref: {type: reference, to: catalog.Category} #<
        """,
        f"{F}.category_ref.to",
        "another service",
        "type: relation, to: Category",
    ),
    case(
        "reference-without-service",
        """
        name: shop
        services:
          identity:
            entities:
              User: {fields: {email: email}}
          orders:
            entities:
              Order:
                fields:
                  customer_id: {type: reference, to: User} #<
        """,
        "services.orders.entities.Order.fields.customer_id.to",
        "expected 'service.Entity'",
        "did you mean 'identity.User'",
    ),
    case(
        "relation-cardinality-typo",
        """
        name: shop
        services:
          catalog:
            entities:
              Tag: {fields: {label: string}}
              Product:
                fields:
                  tags:
                    type: relation
                    to: Tag
                    cardinality: many-to-many #<
        """,
        f"{F}.tags.cardinality",
        "expected one of: many_to_one, one_to_one, many_to_many",
        "did you mean 'many_to_many'",
    ),
    case(
        "required-self-relation",
        """
        name: shop
        services:
          catalog:
            entities:
              Category:
                fields:
                  name: string
                  parent: {type: relation, to: Category} #<
        """,
        "services.catalog.entities.Category.fields.parent.required",
        "self relation must be optional",
        "required: false",
    ),
    case(
        "required-self-relation-written-out",
        """
        name: shop
        services:
          catalog:
            entities:
              Category:
                fields:
                  parent:
                    type: relation
                    to: Category
                    required: true #<
        """,
        "services.catalog.entities.Category.fields.parent.required",
        "self relation must be optional",
    ),
    case(
        "required-relation-cycle",
        """
        name: shop
        services:
          orders:
            entities:
              Order:
                fields:
                  latest_item: {type: relation, to: OrderItem}
              OrderItem:
                fields:
                  order: {type: relation, to: Order} #<
        """,
        "services.orders.entities.OrderItem.fields.order",
        "required relations form a loop",
        "OrderItem -> Order -> OrderItem",
        "optional",
    ),
    case(
        "set-null-on-required-relation",
        """
        name: shop
        services:
          catalog:
            entities:
              Category: {fields: {name: string}}
              Product:
                fields:
                  category:
                    type: relation
                    to: Category
                    on_delete: set_null #<
        """,
        f"{F}.category.on_delete",
        "set_null needs an optional relation",
        "required: false",
    ),
    case(
        "on-delete-on-many-to-many",
        """
        name: shop
        services:
          catalog:
            entities:
              Tag: {fields: {label: string}}
              Product:
                fields:
                  tags:
                    type: relation
                    to: Tag
                    cardinality: many_to_many
                    on_delete: cascade #<
        """,
        f"{F}.tags.on_delete",
        "on_delete does not apply to many_to_many",
    ),
    case(
        "column-collision-relation-and-id-field",
        """
        name: shop
        services:
          catalog:
            entities:
              Category: {fields: {name: string}}
              Product:
                fields:
                  category: {type: relation, to: Category}
                  category_id: integer #<
        """,
        f"{F}.category_id",
        "column 'category_id' is already used by field 'category'",
    ),
    case(
        "link-table-collides-with-an-entity-table",
        """
        name: shop
        services:
          catalog:
            entities:
              Tag: {fields: {label: string}}
              ProductTag: {fields: {label: string}}
              Product:
                fields:
                  tags: {type: relation, to: Tag, cardinality: many_to_many} #<
        """,
        f"{F}.tags",
        "link table 'product_tags'",
        "entity 'ProductTag'",
    ),
    # --- names -------------------------------------------------------------------------------
    case(
        "entity-names-equal-after-case-conversion",
        """
        name: shop
        services:
          logs:
            entities:
              HTTPLog: {fields: {path: string}}
              HttpLog: {fields: {path: string}} #<
        """,
        "services.logs.entities.HttpLog",
        "collides with entity 'HTTPLog'",
        "'http_log'",
    ),
    case(
        "entity-plural-collides-with-another-entity",
        """
        name: shop
        services:
          people:
            entities:
              People: {fields: {label: string}}
              Person: {fields: {full_name: string}} #<
        """,
        "services.people.entities.Person",
        "collides with entity 'People'",
        "'people'",
    ),
    case(
        "explicit-plural-collides",
        """
        name: shop
        services:
          catalog:
            entities:
              Product: {plural: items, fields: {label: string}}
              Article: #<
                plural: items
                fields: {label: string}
        """,
        "services.catalog.entities.Article",
        "collides with entity 'Product'",
        "'items'",
    ),
    case(
        "service-named-like-a-python-keyword",
        """
        name: shop
        services:
          class: #<
            entities:
              Product: {fields: {label: string}}
        """,
        "services.class",
        "Python keyword",
    ),
    case(
        "field-named-like-a-python-keyword",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  label: string
                  import: boolean #<
        """,
        f"{F}.import",
        "Python keyword",
    ),
    case(
        "field-named-like-a-list-query-parameter",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  label: string
                  sort: integer #<
        """,
        f"{F}.sort",
        "'sort' is reserved",
    ),
    case(
        "service-named-gateway",
        """
        name: shop
        services:
          gateway: #<
            entities:
              Route: {fields: {path: string}}
        """,
        "services.gateway",
        "'gateway' is reserved",
    ),
    case(
        "field-name-with-double-underscore",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  price__eur: decimal #<
        """,
        f"{F}.price__eur",
        "double underscores",
    ),
    case(
        "field-name-not-lowercase",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  Name: string #<
        """,
        f"{F}.Name",
        "invalid field name 'Name'",
        "lowercase",
    ),
    case(
        "service-name-with-dash",
        """
        name: shop
        services:
          my-svc: #<
            entities:
              Product: {fields: {label: string}}
        """,
        "services.my-svc",
        "invalid service name 'my-svc'",
    ),
    case(
        "entity-name-not-pascal-case",
        """
        name: shop
        services:
          catalog:
            entities:
              product: #<
                fields: {label: string}
        """,
        "services.catalog.entities.product",
        "invalid entity name 'product'",
        "PascalCase",
    ),
    case(
        "project-name-not-an-identifier",
        """
        name: My Shop #<
        services:
          catalog:
            entities:
              Product: {fields: {label: string}}
        """,
        "name",
        "invalid name 'My Shop'",
    ),
    case(
        "entity-plural-not-an-identifier",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                plural: Products #<
                fields: {label: string}
        """,
        f"{P}.plural",
        "invalid name 'Products'",
    ),
    # --- automatic fields ----------------------------------------------------------------
    *[
        case(
            f"redefined-automatic-field-{name}",
            f"""
            name: shop
            services:
              catalog:
                entities:
                  Product:
                    fields:
                      label: string
                      {name}: string #<
            """,
            f"{F}.{name}",
            f"'{name}' is added to every entity automatically",
        )
        for name in ("id", "created_at", "updated_at")
    ],
    # --- options that contradict each other ------------------------------------------------
    case(
        "enum-without-values",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  status: enum #<
        """,
        f"{F}.status.values",
        "needs at least one value",
    ),
    case(
        "enum-with-empty-values",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  status:
                    type: enum
                    values: [] #<
        """,
        f"{F}.status.values",
        "needs at least one value",
    ),
    case(
        "enum-with-duplicate-values",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  status:
                    type: enum
                    values:
                      - draft
                      - active
                      - draft #<
        """,
        f"{F}.status.values[2]",
        "duplicate enum value 'draft'",
    ),
    case(
        "enum-values-read-as-booleans",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  answer:
                    type: enum
                    values:
                      - maybe
                      - yes #<
        """,
        f"{F}.answer.values[1]",
        "expected a string",
        "boolean",
        "quote",
    ),
    case(
        "decimal-scale-above-precision",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  price:
                    type: decimal
                    precision: 4
                    scale: 6 #<
        """,
        f"{F}.price.scale",
        "scale (6) must not exceed precision (4)",
    ),
    case(
        "decimal-max-does-not-fit-precision",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  price:
                    type: decimal
                    precision: 5
                    scale: 2
                    max: 1000 #<
        """,
        f"{F}.price.max",
        "does not fit decimal(5, 2)",
        "999.99",
    ),
    *[
        case(
            f"min-above-max-{kind}",
            f"""
            name: shop
            services:
              catalog:
                entities:
                  Product:
                    fields:
                      amount:
                        type: {kind}
                        max: 1
                        min: 10 #<
            """,
            f"{F}.amount.min",
            "min (10",
            "is above max (1",
        )
        for kind in ("integer", "bigint", "decimal", "float")
    ],
    case(
        "integer-bound-beyond-32-bits",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  views:
                    type: integer
                    max: 10000000000 #<
        """,
        f"{F}.views.max",
        "32-bit",
        "bigint",
    ),
    case(
        "min-length-above-max-length",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  code:
                    type: string
                    max_length: 3
                    min_length: 5 #<
        """,
        f"{F}.code.min_length",
        "min_length (5) is above max_length (3)",
    ),
    case(
        "invalid-regex-pattern",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  code:
                    type: string
                    pattern: '[A-Z' #<
        """,
        f"{F}.code.pattern",
        "invalid regular expression",
    ),
    case(
        "regex-pattern-the-validator-cannot-run",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  code:
                    type: string
                    pattern: '^(?!x)[a-z]+$' #<
        """,
        f"{F}.code.pattern",
        "not supported",
        "look-around",
    ),
    # --- defaults ----------------------------------------------------------------------------
    case(
        "enum-default-not-in-values",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  status:
                    type: enum
                    values: [draft, active]
                    default: retired #<
        """,
        f"{F}.status.default",
        "default 'retired' does not fit",
        "'draft'",
        "'active'",
    ),
    case(
        "string-default-too-long",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  code:
                    type: string
                    max_length: 3
                    default: ABCDE #<
        """,
        f"{F}.code.default",
        "default 'ABCDE' does not fit",
        "at most 3 characters",
    ),
    case(
        "integer-default-is-a-string",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  stock:
                    type: integer
                    default: "12" #<
        """,
        f"{F}.stock.default",
        "default '12' does not fit",
        "valid integer",
    ),
    case(
        "default-outside-min-max",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  stock:
                    type: integer
                    min: 0
                    default: -1 #<
        """,
        f"{F}.stock.default",
        "default -1 does not fit",
        "greater than or equal to 0",
    ),
    case(
        "example-does-not-fit",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  contact:
                    type: email
                    example: not-an-address #<
        """,
        f"{F}.contact.example",
        "example 'not-an-address' does not fit the email field",
    ),
    # --- keys and indexes --------------------------------------------------------------------
    case(
        "unique-on-text",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  body:
                    type: text
                    unique: true #<
        """,
        f"{F}.body.unique",
        "text field cannot be unique",
    ),
    case(
        "indexed-on-json",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  attributes:
                    type: json
                    indexed: true #<
        """,
        f"{F}.attributes.indexed",
        "json field cannot be indexed",
    ),
    case(
        "sortable-on-json",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  attributes:
                    type: json
                    sortable: true #<
        """,
        f"{F}.attributes.sortable",
        "cannot be sortable",
    ),
    case(
        "unique-together-unknown-field",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                unique_together:
                  - [name, colour] #<
                fields:
                  name: string
                  color: string
        """,
        f"{P}.unique_together[0][1]",
        "unknown field 'colour'",
        "did you mean 'color'",
    ),
    case(
        "unique-together-names-a-column-not-a-field",
        """
        name: shop
        services:
          catalog:
            entities:
              Category: {fields: {label: string}}
              Product:
                unique_together: [[label, category_id]] #<
                fields:
                  label: string
                  category: {type: relation, to: Category}
        """,
        f"{P}.unique_together[0][1]",
        "unknown field 'category_id'",
        "name the relation field 'category'",
    ),
    case(
        "unique-together-names-a-many-to-many",
        """
        name: shop
        services:
          catalog:
            entities:
              Tag: {fields: {label: string}}
              Product:
                fields:
                  label: string
                  tags: {type: relation, to: Tag, cardinality: many_to_many}
                unique_together:
                  - [label, tags] #<
        """,
        f"{P}.unique_together[0][1]",
        "'tags' is many_to_many",
    ),
    case(
        "index-on-a-text-field",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  label: string
                  body: text
                indexes: [[label, body]] #<
        """,
        f"{P}.indexes[0][1]",
        "'body' is a text field and cannot be indexed",
    ),
    case(
        "unique-together-is-a-flat-list",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                unique_together: [label] #<
                fields:
                  label: string
        """,
        f"{P}.unique_together[0]",
        "list of lists",
        "[[name, category]]",
    ),
    # --- databases -----------------------------------------------------------------------------
    case(
        "database-driver-not-async",
        """
        name: shop
        services:
          catalog:
            database: postgresql://shop@localhost/catalog #<
            entities:
              Product: {fields: {label: string}}
        """,
        "services.catalog.database",
        "unsupported driver 'postgresql'",
        "use 'postgresql+asyncpg'",
    ),
    case(
        "database-driver-unknown",
        """
        name: shop
        services:
          catalog:
            database: oracle+oracledb://shop@localhost/catalog #<
            entities:
              Product: {fields: {label: string}}
        """,
        "services.catalog.database",
        "unsupported driver 'oracle+oracledb'",
        "mysql+asyncmy",
    ),
    case(
        "database-not-a-url",
        """
        name: shop
        services:
          catalog:
            database: postgres on my laptop #<
            entities:
              Product: {fields: {label: string}}
        """,
        "services.catalog.database",
        "expected 'sqlite' or a SQLAlchemy URL",
    ),
    # --- empty or missing parts ------------------------------------------------------------
    case(
        "no-services",
        """
        name: shop
        services: {} #<
        """,
        "services",
        "at least one service",
    ),
    case(
        "no-entities",
        """
        name: shop
        services:
          catalog:
            entities: {} #<
        """,
        "services.catalog.entities",
        "at least one entity",
    ),
    case(
        "no-fields",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields: {} #<
        """,
        f"{P}.fields",
        "at least one field",
    ),
    case(
        "entities-left-empty",
        """
        name: shop
        services:
          catalog:
            entities: #<
        """,
        "services.catalog.entities",
        "expected a mapping",
        "got nothing",
    ),
    case(
        "missing-fields-points-at-the-entity",
        """
        name: shop
        services:
          catalog:
            entities:
              Product: #<
                soft_delete: true
        """,
        f"{P}.fields",
        "missing required key 'fields'",
    ),
    case(
        "missing-project-name",
        """
        services: #<
          catalog:
            entities:
              Product: {fields: {label: string}}
        """,
        "name",
        "missing required key 'name'",
        line=1,
    ),
    # --- wrong value types -----------------------------------------------------------------
    case(
        "required-maybe",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  label:
                    type: string
                    required: maybe #<
        """,
        f"{F}.label.required",
        "valid boolean",
        "'maybe'",
    ),
    case(
        "negative-max-length",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  label:
                    type: string
                    max_length: -1 #<
        """,
        f"{F}.label.max_length",
        "greater than or equal to 1",
        "-1",
    ),
    case(
        "id-kind-typo",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                id: int #<
                fields: {label: string}
        """,
        f"{P}.id",
        "expected one of: uuid, integer",
        "did you mean 'integer'",
    ),
    case(
        "version-read-as-a-number",
        """
        name: shop
        version: 1.0 #<
        services:
          catalog:
            entities:
              Product: {fields: {label: string}}
        """,
        "version",
        "expected a string",
        "quote",
    ),
    # --- seed rows -----------------------------------------------------------------------------
    case(
        "seed-unknown-field",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  label: string
                  price: decimal
                seed:
                  - label: Lamp
                    prize: 10 #<
                    price: 10
        """,
        f"{P}.seed[0].prize",
        "unknown field 'prize'",
        "did you mean 'price'",
    ),
    case(
        "seed-relation-lookup-is-not-a-mapping",
        """
        name: shop
        services:
          catalog:
            entities:
              Category: {id: integer, fields: {label: string}}
              Product:
                fields:
                  label: string
                  category: {type: relation, to: Category}
                seed:
                  - {label: Lamp, category: 1} #<
        """,
        f"{P}.seed[0].category",
        "expected the id as 'category_id'",
        "a mapping of Category fields",
    ),
    case(
        "seed-relation-lookup-names-an-unknown-field",
        """
        name: shop
        services:
          catalog:
            entities:
              Category: {fields: {slug: string}}
              Product:
                fields:
                  label: string
                  category: {type: relation, to: Category}
                seed:
                  - label: Lamp
                    category:
                      slgu: lighting #<
        """,
        f"{P}.seed[0].category.slgu",
        "Category has no field 'slgu'",
        "did you mean 'slug'",
    ),
    case(
        "seed-relation-given-twice",
        """
        name: shop
        services:
          catalog:
            entities:
              Category: {id: integer, fields: {slug: string}}
              Product:
                fields:
                  label: string
                  category: {type: relation, to: Category}
                seed:
                  - label: Lamp
                    category_id: 1
                    category: {slug: lighting} #<
        """,
        f"{P}.seed[0].category",
        "'category' is already given as 'category_id'",
    ),
    case(
        "seed-value-does-not-fit",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  label: string
                  price: {type: decimal, min: 0}
                seed:
                  - label: Lamp
                    price: -5 #<
        """,
        f"{P}.seed[0].price",
        "value -5 does not fit",
        "greater than or equal to 0",
    ),
    case(
        "seed-row-misses-a-required-field",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  label: string
                  price: decimal
                  status: {type: enum, values: [draft, active], default: draft}
                seed:
                  - {label: Lamp} #<
        """,
        f"{P}.seed[0]",
        "missing 'price'",
        "required",
    ),
    case(
        "seed-row-sets-created-at",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  label: string
                seed:
                  - label: Lamp
                    created_at: 2024-01-01T00:00:00Z #<
        """,
        f"{P}.seed[0].created_at",
        "'created_at' is set automatically",
    ),
    case(
        "seed-id-of-the-wrong-kind",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  label: string
                seed:
                  - id: 7 #<
                    label: Lamp
        """,
        f"{P}.seed[0].id",
        "id must be a UUID string",
    ),
    case(
        "seed-duplicate-id",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                id: integer
                fields:
                  label: string
                seed:
                  - {id: 1, label: Lamp}
                  - {id: 1, label: Desk} #<
        """,
        f"{P}.seed[1].id",
        "id 1 is already used by seed row 0",
    ),
    case(
        "seed-relation-id-of-the-wrong-kind",
        """
        name: shop
        services:
          catalog:
            entities:
              Category: {id: integer, fields: {label: string}}
              Product:
                fields:
                  label: string
                  category: {type: relation, to: Category}
                seed:
                  - label: Lamp
                    category_id: lighting #<
        """,
        f"{P}.seed[0].category_id",
        "positive integer",
    ),
    case(
        "seed-duplicates-a-unique-value",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  sku: {type: string, unique: true}
                seed:
                  - {sku: A-1}
                  - {sku: A-1} #<
        """,
        f"{P}.seed[1].sku",
        "'sku' is unique",
        "seed row 0",
    ),
    case(
        "yaml-merge-of-a-scalar",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  label:
                    <<: string #<
        """,
        f"{F}.label",
        "'<<' must merge a mapping",
    ),
]


def _expected_line(c: Case) -> int:
    if c.line is not None:
        return c.line
    marked = [n for n, text in enumerate(c.text.splitlines(), start=1) if MARK in text]
    assert len(marked) == 1, f"case {c.id} must mark exactly one line with {MARK}"
    return marked[0]


def _load_error(tmp_path: Path, text: str) -> tuple[str, SpecError]:
    file = tmp_path / "spec.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(file)
    return str(file), info.value


def test_case_ids_are_unique_and_plenty() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 35


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_spec(tmp_path: Path, c: Case) -> None:
    check_case(tmp_path, c)


def check_case(tmp_path: Path, c: Case) -> None:
    """The case's spec fails with an issue at its path, line and words, and no other."""
    file, error = _load_error(tmp_path, c.text)
    line = _expected_line(c)
    report = str(error)
    matching = [i for i in error.issues if _path(i) == c.path]
    assert matching, f"no issue at {c.path}:\n{report}"
    issue = matching[0]
    assert issue.file == file
    assert issue.line == line, f"expected line {line}:\n{report}"
    for word in c.words:
        assert word in issue.message, f"{word!r} not in {issue.message!r}"
    assert len(error.issues) == c.count, report
    # The rendered form users see: file:line:col: dotted.path: message
    assert str(issue) == f"{file}:{line}:{issue.column}: {c.path}: {issue.message}"
    assert str(issue) in report.splitlines()


def _path(issue: SpecIssue) -> str:
    return str(issue).split(": ", 2)[1]


def test_errors_point_at_the_offending_column(tmp_path: Path) -> None:
    text = "name: shop\nservices:\n  catalog:\n    entities:\n      Product:\n"
    text += "        fields:\n          name: {type: string, max_lenght: 80}\n"
    _, error = _load_error(tmp_path, text)
    [issue] = error.issues
    assert (issue.line, issue.column) == (7, 32)


def test_many_problems_are_reported_at_once_sorted_by_line(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """
        name: shop
        services:
          catalog:
            entities:
              Category:
                fields:
                  parent: {type: relation, to: Category}
                  sort: integer
              Product:
                fields:
                  price: {type: decimal, precision: 4, scale: 6}
                  status: {type: enum, values: [a, b], default: c}
                  category: {type: relation, to: Categry}
          gateway:
            entities:
              Route: {fields: {path: string}}
        """
    ).lstrip()
    file, error = _load_error(tmp_path, text)
    lines = [i.line or 0 for i in error.issues]
    assert lines == sorted(lines)
    assert [(i.line, _path(i)) for i in error.issues] == [
        (7, "services.catalog.entities.Category.fields.parent.required"),
        (8, "services.catalog.entities.Category.fields.sort"),
        (11, "services.catalog.entities.Product.fields.price.scale"),
        (12, "services.catalog.entities.Product.fields.status.default"),
        (13, "services.catalog.entities.Product.fields.category.to"),
        (14, "services.gateway"),
    ]
    assert all(i.file == file for i in error.issues)
    assert str(error).count("\n") == len(error.issues) - 1


def test_model_errors_are_reported_together(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """
        name: shop
        servics: {}
        services:
          catalog:
            entities:
              Product:
                fileds: {}
                fields:
                  name: {type: strng}
                  price: {type: decimal, scale: -1}
        """
    ).lstrip()
    _, error = _load_error(tmp_path, text)
    assert [(i.line, _path(i)) for i in error.issues] == [
        (2, "servics"),
        (7, "services.catalog.entities.Product.fileds"),
        (9, "services.catalog.entities.Product.fields.name.type"),
        (10, "services.catalog.entities.Product.fields.price.scale"),
    ]


def test_missing_file_is_reported_with_its_name(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(missing)
    [issue] = info.value.issues
    assert issue.file == str(missing)
    assert "file not found" in issue.message


def test_load_spec_text_names_the_given_file() -> None:
    with pytest.raises(SpecError) as info:
        load_spec_text("name: shop\nservices: []\n", "inline.yaml")
    assert str(info.value) == "inline.yaml:2:11: services: expected a mapping, got a list"


# --- specs that load --------------------------------------------------------------------------

ALL_TYPES = """
name: shop
services:
  catalog:
    entities:
      Category:
        id: integer
        fields:
          title: string
          parent: {type: relation, to: Category, required: false, on_delete: set_null}
      Tag:
        fields: {label: {type: string, max_length: 30, unique: true}}
      Product:
        soft_delete: true
        unique_together: [[title, category]]
        indexes: [[status, price]]
        fields:
          title: {type: string, max_length: 200, min_length: 1, pattern: '^\\S', searchable: true}
          body: {type: text, required: false, searchable: true}
          contact: {type: email, required: false}
          homepage: {type: url, required: false}
          stock: {type: integer, min: 0, default: 0}
          views: {type: bigint, min: 0, default: 0}
          price: {type: decimal, precision: 10, scale: 2, min: 0, default: 9.99}
          weight: {type: float, min: 0, required: false}
          active: {type: boolean, default: true}
          released_on: {type: date, required: false, default: 2024-01-01}
          checked_at: {type: datetime, required: false}
          external_ref: {type: uuid, required: false}
          status: {type: enum, values: [draft, active], default: draft}
          flags: {type: enum_list, values: [new, sale], default: [new]}
          extra: {type: json, required: false, default: {colour: red}}
          category: {type: relation, to: Category, cardinality: many_to_one, on_delete: cascade}
          spec_sheet: {type: relation, to: Tag, cardinality: one_to_one, required: false}
          tags: {type: relation, to: Tag, cardinality: many_to_many}
          related: {type: relation, to: Product, cardinality: many_to_many}
          owner_id: {type: reference, to: identity.User, required: false}
        seed:
          - {title: Lamp, price: 12.5, category_id: 1, flags: [sale], external_ref: null}
  identity:
    database: postgresql+asyncpg://user:secret@localhost:5432/identity
    entities:
      User:
        fields:
          email: {type: email, unique: true}
"""


def test_every_field_type_loads(tmp_path: Path) -> None:
    file = tmp_path / "spec.yaml"
    file.write_text(ALL_TYPES, encoding="utf-8")
    spec = load_spec(file)
    fields = spec.services["catalog"].entities["Product"].fields
    assert {f.type for f in fields.values()} >= {
        "string", "text", "email", "url", "integer", "bigint", "decimal", "float", "boolean",
        "date", "datetime", "uuid", "enum", "enum_list", "json", "relation", "reference",
    }  # fmt: skip


def test_shorthand_fields_load() -> None:
    spec = load_spec_text(
        textwrap.dedent(
            """
            name: blog
            services:
              posts:
                entities:
                  Post:
                    fields:
                      title: string
                      body: text
                      author_email: email
                      link: url
                      likes: integer
                      shares: bigint
                      price: decimal
                      score: float
                      published: boolean
                      day: date
                      published_at: datetime
                      token: uuid
                      meta: json
            """
        )
    )
    fields = spec.services["posts"].entities["Post"].fields
    assert {name: f.type for name, f in fields.items()}["title"] == "string"
    assert all(f.required for f in fields.values())
    assert len(fields) == 13


def test_yaml_keys_are_names_as_written() -> None:
    # Unquoted `on`, `yes` and `no` are booleans in YAML 1.1; as keys they stay names.
    spec = load_spec_text(
        "name: shop\nservices:\n  sched:\n    entities:\n      Shift:\n"
        "        fields: {on: boolean, yes: string, type: string, match: integer}\n"
    )
    assert list(spec.services["sched"].entities["Shift"].fields) == ["on", "yes", "type", "match"]


def test_yaml_merge_keys_share_field_options() -> None:
    spec = load_spec_text(
        textwrap.dedent(
            """
            name: shop
            services:
              catalog:
                entities:
                  Product:
                    fields:
                      name: &label {type: string, max_length: 80, searchable: true}
                      subtitle:
                        <<: *label
                        required: false
            """
        )
    )
    subtitle = spec.services["catalog"].entities["Product"].fields["subtitle"]
    assert subtitle.type == "string"
    assert subtitle.required is False
    assert subtitle.searchable is True
