"""Bad `auth` sections and `access` rules: each problem names the file, line, path and fix.

Same layout as test_bad_specs.py (whose helpers this reuses): each case is a small spec, the
line the error must point at carries the marker `#<`, and the test asserts the issue's file,
line, dotted path, the key words of its message and how many issues the file produces.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from microforge.generator.access_plan import access_plan, auth_plan
from microforge.spec import load_spec, load_spec_text
from microforge.spec.model import Auth, EntityAccess, LoginThrottle

from .test_bad_specs import Case, _load_error, _path, case, check_case

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop" / "shop.yaml"

I = "services.identity.entities"  # noqa: E741
U = "services.identity.entities.User"
P = "services.catalog.entities.Product"

CASES = [
    # --- the auth section -----------------------------------------------------------------
    case(
        "unknown-signup-role-with-did-you-mean",
        """
        name: shop
        auth:
          service: identity
          roles: [customer, admin]
          signup_roles: [custmer] #<
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.signup_roles[0]",
        "unknown role 'custmer'",
        "did you mean 'customer'",
        "roles: admin, customer",
    ),
    case(
        "unknown-admin-role",
        """
        name: shop
        auth:
          service: identity
          roles: [customer, admin]
          admin_roles: [admin, root] #<
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.admin_roles[1]",
        "unknown role 'root'",
        "roles: admin, customer",
    ),
    case(
        "default-admin-role-not-among-the-roles",
        """
        name: shop
        auth: #<
          service: identity
          roles: [customer, staff]
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.admin_roles[0]",
        "unknown role 'admin'",
    ),
    case(
        "duplicate-role",
        """
        name: shop
        auth:
          service: identity
          roles:
            - customer
            - admin
            - customer #<
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.roles[2]",
        "role 'customer' is listed twice",
    ),
    case(
        "empty-roles",
        """
        name: shop
        auth:
          service: identity
          roles: [] #<
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.roles",
        "at least one role",
        count=2,  # and the default admin role 'admin' is then unknown
    ),
    case(
        "empty-admin-roles",
        """
        name: shop
        auth:
          service: identity
          roles: [customer]
          admin_roles: [] #<
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.admin_roles",
        "at least one admin role",
    ),
    case(
        "access-token-outlives-refresh-token",
        """
        name: shop
        auth:
          service: identity
          roles: [admin]
          access_token_ttl: 3600 #<
          refresh_token_ttl: 3600
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.access_token_ttl",
        "access token must expire before the refresh token",
    ),
    case(
        "access-token-ttl-below-minimum",
        """
        name: shop
        auth:
          service: identity
          roles: [admin]
          access_token_ttl: 30 #<
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.access_token_ttl",
        "60",
    ),
    case(
        "refresh-token-ttl-above-maximum",
        """
        name: shop
        auth:
          service: identity
          roles: [admin]
          refresh_token_ttl: 99999999 #<
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.refresh_token_ttl",
        "31536000",
    ),
    case(
        "login-throttle-without-attempts",
        """
        name: shop
        auth:
          service: identity
          roles: [admin]
          login_throttle: {attempts: 0, window: 60} #<
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.login_throttle.attempts",
        "1",
    ),
    case(
        "unknown-identity-service-with-did-you-mean",
        """
        name: shop
        auth:
          service: identiy #<
          roles: [admin]
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.service",
        "unknown service 'identiy'",
        "did you mean 'identity'",
        "services: identity",
    ),
    case(
        "unknown-user-entity-with-did-you-mean",
        """
        name: shop
        auth:
          service: identity
          user_entity: Usr #<
          roles: [admin]
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.user_entity",
        "no entity 'Usr'",
        "did you mean 'User'",
    ),
    case(
        "user-entity-without-unique-email",
        """
        name: shop
        auth:
          service: identity
          user_entity: Account #<
          roles: [admin]
        services:
          identity:
            entities:
              Account: {fields: {email: {type: email}}}
        """,
        "auth.user_entity",
        "'Account' needs a field `email: {type: email, unique: true}`",
        "login name",
    ),
    case(
        "user-entity-with-a-string-email",
        """
        name: shop
        auth:
          service: identity
          user_entity: User #<
          roles: [admin]
        services:
          identity:
            entities:
              User: {fields: {email: {type: string, unique: true}}}
        """,
        "auth.user_entity",
        "needs a field `email: {type: email, unique: true}`",
    ),
    case(
        "user-entity-with-integer-ids",
        """
        name: shop
        auth:
          service: identity
          user_entity: User #<
          roles: [admin]
        services:
          identity:
            entities:
              User: {id: integer, fields: {email: {type: email, unique: true}}}
        """,
        "auth.user_entity",
        "must use uuid ids",
    ),
    case(
        "user-entity-with-soft-delete",
        """
        name: shop
        auth:
          service: identity
          user_entity: User #<
          roles: [admin]
        services:
          identity:
            entities:
              User: {soft_delete: true, fields: {email: {type: email, unique: true}}}
        """,
        "auth.user_entity",
        "cannot use soft_delete",
    ),
    case(
        "entity-table-collides-with-identity-table",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
              ApiKey: #<
                plural: auth_api_keys
                fields: {label: string}
        """,
        f"{I}.ApiKey",
        "table 'auth_api_keys' is used by the identity service",
    ),
    case(
        "entity-named-after-an-identity-table",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
              AuthCredential: {fields: {label: string}} #<
        """,
        f"{I}.AuthCredential",
        "table 'auth_credentials'",
    ),
    case(
        "unknown-auth-key-with-did-you-mean",
        """
        name: shop
        auth:
          service: identity
          roles: [admin]
          signup_role: [admin] #<
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.signup_role",
        "unknown key 'signup_role'",
        "did you mean 'signup_roles'",
    ),
    case(
        "auth-without-roles",
        """
        name: shop
        auth: {service: identity} #<
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.roles",
        "missing required key 'roles'",
    ),
    case(
        "role-not-an-identifier",
        """
        name: shop
        auth:
          service: identity
          roles: [admin, Sales Team] #<
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
        """,
        "auth.roles[1]",
        "Sales Team",
    ),
    # --- access rules without auth --------------------------------------------------------
    case(
        "entity-access-without-auth",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                access: {read: public} #<
                fields: {name: string}
        """,
        f"{P}.access",
        "need a top-level `auth` section",
    ),
    case(
        "field-access-without-auth",
        """
        name: shop
        services:
          catalog:
            entities:
              Product:
                fields:
                  name: string
                  cost: {type: decimal, access: {read: [staff]}} #<
        """,
        f"{P}.fields.cost.access",
        "need a top-level `auth` section",
    ),
    # --- roles in access rules -------------------------------------------------------------
    case(
        "unknown-role-in-an-action",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: public
                  update: [admin, stuff] #<
                fields: {name: string}
        """,
        f"{P}.access.update[1]",
        "unknown role 'stuff'",
        "did you mean 'staff'",
    ),
    case(
        "unknown-role-in-the-list-action",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  list: [auditor] #<
                fields: {name: string}
        """,
        f"{P}.access.list[0]",
        "unknown role 'auditor'",
        "roles: admin, staff",
    ),
    case(
        "unknown-role-in-all-rows",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: public
                  where: {active: true}
                  all_rows: [staf] #<
                fields: {name: string, active: boolean}
        """,
        f"{P}.access.all_rows[0]",
        "unknown role 'staf'",
        "did you mean 'staff'",
    ),
    case(
        "unknown-role-in-field-read",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                fields:
                  name: string
                  cost:
                    type: decimal
                    access:
                      read: [accounting] #<
        """,
        f"{P}.fields.cost.access.read[0]",
        "unknown role 'accounting'",
    ),
    case(
        "unknown-role-in-field-write",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                fields:
                  name: string
                  cost: {type: decimal, access: {write: [admin, staaff]}} #<
        """,
        f"{P}.fields.cost.access.write[1]",
        "unknown role 'staaff'",
        "did you mean 'staff'",
    ),
    case(
        "action-rule-that-is-no-rule",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: everyone #<
                fields: {name: string}
        """,
        f"{P}.access.read",
        "expected `public`, `authenticated` or a list of roles",
        "(got 'everyone')",
    ),
    case(
        "action-rule-misspelt-with-did-you-mean",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access: {create: [admin], read: Public} #<
                fields: {name: string}
        """,
        f"{P}.access.read",
        "did you mean 'public'",
    ),
    case(
        "action-rule-with-an-invalid-role-name",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  delete:
                    - admin
                    - Sales Team #<
                fields: {name: string}
        """,
        f"{P}.access.delete[1]",
        "invalid name 'Sales Team'",
    ),
    case(
        "unknown-access-key-with-did-you-mean",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  owner: seller_id #<
                fields: {name: string}
        """,
        f"{P}.access.owner",
        "unknown key 'owner'",
        "did you mean 'own'",
    ),
    case(
        "unknown-field-access-key",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                fields:
                  cost: {type: decimal, access: {reed: [admin]}} #<
        """,
        f"{P}.fields.cost.access.reed",
        "unknown key 'reed'",
        "did you mean 'read'",
    ),
    # --- own ------------------------------------------------------------------------------
    case(
        "own-on-a-plain-field",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: authenticated
                  own: name #<
                fields: {name: string}
        """,
        f"{P}.access.own",
        "'name' must hold a user id",
        "a reference to identity.User",
    ),
    case(
        "own-on-an-unknown-field-with-did-you-mean",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: authenticated
                  own: seller #<
                fields:
                  name: string
                  seller_id: {type: reference, to: identity.User}
        """,
        f"{P}.access.own",
        "unknown field 'seller'",
        "did you mean 'seller_id'",
    ),
    case(
        "own-id-outside-the-user-entity",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: authenticated
                  own: id #<
                fields: {name: string}
        """,
        f"{P}.access.own",
        "`own: id` is only for the user entity",
    ),
    case(
        "own-on-a-reference-to-another-entity",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
              Team: {fields: {name: string}}
          catalog:
            entities:
              Product:
                access:
                  read: authenticated
                  own: team_id #<
                fields:
                  name: string
                  team_id: {type: reference, to: identity.Team}
        """,
        f"{P}.access.own",
        "'team_id' must hold a user id",
        "identity.User",
    ),
    case(
        "own-on-a-relation-to-another-entity",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
              Team: {fields: {name: string}}
              Address:
                plural: addresses
                access:
                  read: authenticated
                  own: team #<
                fields:
                  team: {type: relation, to: Team}
                  city: string
        """,
        f"{I}.Address.access.own",
        "'team' must hold a user id",
    ),
    case(
        "own-on-a-many-to-many-relation-to-users",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
              Team:
                access:
                  read: authenticated
                  own: members #<
                fields:
                  name: string
                  members: {type: relation, to: User, cardinality: many_to_many}
        """,
        f"{I}.Team.access.own",
        "'members' must hold a user id",
    ),
    case(
        "owned-entity-with-a-public-action",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          orders:
            entities:
              Order:
                access:
                  create: authenticated
                  read: public #<
                  own: customer_id
                fields:
                  customer_id: {type: reference, to: identity.User}
        """,
        "services.orders.entities.Order.access.read",
        "an owned entity cannot be public",
        "authenticated",
    ),
    # --- where ----------------------------------------------------------------------------
    case(
        "where-on-an-unknown-field-with-did-you-mean",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: public
                  where:
                    stauts: active #<
                  all_rows: [staff]
                fields:
                  status: {type: enum, values: [draft, active]}
        """,
        f"{P}.access.where.stauts",
        "unknown field 'stauts'",
        "did you mean 'status'",
    ),
    case(
        "where-on-a-json-field",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: public
                  where: {attributes: {colour: red}} #<
                  all_rows: [staff]
                fields:
                  attributes: {type: json}
        """,
        f"{P}.access.where.attributes",
        "'attributes' is a json field",
        "plain values",
    ),
    case(
        "where-on-an-enum-list-field",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: public
                  where:
                    flags: [sale] #<
                  all_rows: [staff]
                fields:
                  flags: {type: enum_list, values: [new, sale]}
        """,
        f"{P}.access.where.flags",
        "'flags' is a enum_list field",
    ),
    case(
        "where-value-not-among-the-enum-values",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: public
                  where: {status: actve} #<
                  all_rows: [staff]
                fields:
                  status: {type: enum, values: [draft, active]}
        """,
        f"{P}.access.where.status",
        "value 'actve' does not fit the enum field",
        "'draft' or 'active'",
    ),
    case(
        "where-list-with-one-bad-value",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: public
                  where:
                    status:
                      - active
                      - gone #<
                  all_rows: [staff]
                fields:
                  status: {type: enum, values: [draft, active]}
        """,
        f"{P}.access.where.status[1]",
        "value 'gone' does not fit the enum field",
    ),
    case(
        "where-value-of-the-wrong-type",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: public
                  where: {stock: plenty} #<
                  all_rows: [staff]
                fields:
                  stock: integer
        """,
        f"{P}.access.where.stock",
        "value 'plenty' does not fit the integer field",
    ),
    case(
        "where-without-all-rows",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: public
                  where: {active: true} #<
                fields:
                  active: boolean
        """,
        f"{P}.access.where",
        "hides rows from everyone",
        "all_rows",
    ),
    # --- tenant ---------------------------------------------------------------------------
    case(
        "tenant-without-tenancy",
        """
        name: shop
        auth: {service: identity, roles: [admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: authenticated
                  tenant: true #<
                fields: {name: string}
        """,
        f"{P}.access.tenant",
        "needs `auth.tenancy: true`",
    ),
    case(
        "tenant-with-seed-rows",
        """
        name: shop
        auth: {service: identity, roles: [admin], tenancy: true}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  tenant: true #<
                fields: {name: string}
                seed:
                  - {name: Lamp}
        """,
        f"{P}.access.tenant",
        "seed rows cannot name",
    ),
    case(
        "tenant-with-a-tenant-id-field",
        """
        name: shop
        auth: {service: identity, roles: [admin], tenancy: true}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: authenticated
                  tenant: true #<
                fields:
                  name: string
                  tenant_id: uuid
        """,
        f"{P}.access.tenant",
        "the field 'tenant_id' is added by tenant scoping",
    ),
    case(
        "tenant-with-a-relation-stored-as-tenant-id",
        """
        name: shop
        auth: {service: identity, roles: [admin], tenancy: true}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Shop: {fields: {name: string}}
              Product:
                access:
                  read: authenticated
                  tenant: true #<
                fields:
                  name: string
                  tenant: {type: relation, to: Shop}
        """,
        f"{P}.access.tenant",
        "the relation 'tenant' is stored in the column 'tenant_id'",
        "tenant scoping adds",
    ),
    # --- field access ---------------------------------------------------------------------
    case(
        "required-field-nobody-may-write",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                fields:
                  name: string
                  sku:
                    type: string
                    access:
                      write: [] #<
        """,
        f"{P}.fields.sku.access.write",
        "nobody may write this required field without a default",
        "add a default or allow a role",
    ),
    case(
        "required-relation-nobody-may-write",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Category: {fields: {name: string}}
              Product:
                fields:
                  name: string
                  category: {type: relation, to: Category, access: {write: []}} #<
        """,
        f"{P}.fields.category.access.write",
        "nobody may write this required field",
    ),
    case(
        "required-reference-nobody-may-write",
        """
        name: shop
        auth: {service: identity, roles: [staff, admin]}
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access: {read: authenticated}
                fields:
                  name: string
                  seller_id:
                    type: reference
                    to: identity.User
                    access: {write: []} #<
        """,
        f"{P}.fields.seller_id.access.write",
        "nobody may write this required field",
    ),
]


PARAMS = [pytest.param(c, id=c.id) for c in CASES]


@pytest.mark.parametrize("c", PARAMS)
def test_bad_auth_spec(tmp_path: Path, c: Case) -> None:
    check_case(tmp_path, c)


def test_auth_case_ids_are_unique_and_plenty() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 20


def test_problems_of_auth_and_access_are_reported_together(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """
        name: shop
        auth:
          service: identity
          roles: [staff, admin]
          signup_roles: [guest]
        services:
          identity:
            entities:
              User: {fields: {email: {type: email, unique: true}}}
          catalog:
            entities:
              Product:
                access:
                  read: [guest]
                  own: id
                fields:
                  name: {type: string, access: {write: []}}
        """
    ).lstrip()
    _, error = _load_error(tmp_path, text)
    assert [(i.line, _path(i)) for i in error.issues] == [
        (5, "auth.signup_roles[0]"),
        (14, "services.catalog.entities.Product.access.read[0]"),
        (15, "services.catalog.entities.Product.access.own"),
        (17, "services.catalog.entities.Product.fields.name.access.write"),
    ]


# --- specs that load --------------------------------------------------------------------------


def test_the_shop_example_loads_with_its_auth_section() -> None:
    spec = load_spec(SHOP)
    assert spec.auth is not None
    assert spec.auth.service == "identity"
    assert spec.auth.roles == ["customer", "staff", "admin"]
    user = spec.services["identity"].entities["User"]
    assert user.access is not None
    assert user.access.own == "id"
    order = spec.services["orders"].entities["Order"]
    assert order.access is not None
    assert order.access.own == "customer_id"
    product = spec.services["catalog"].entities["Product"]
    assert product.access is not None
    assert product.access.where == {"status": "active"}


EVERY_OPTION = """
name: shop
auth:
  service: accounts
  user_entity: Member
  roles: [member, staff, owner]
  admin_roles: [owner]
  signup: false
  signup_roles: [member]
  tenancy: true
  access_token_ttl: 300
  refresh_token_ttl: 86400
  login_throttle: {attempts: 3, window: 600}
services:
  accounts:
    entities:
      Member:
        access: {read: authenticated, update: authenticated, own: id, all_rows: [staff, owner]}
        fields:
          email: {type: email, unique: true}
          nickname: {type: string, required: false}
          roles_note: {type: text, required: false, access: {read: [staff], write: [owner]}}
      Address:
        plural: addresses
        access:
          create: authenticated
          read: authenticated
          list: [staff, owner]
          update: authenticated
          delete: authenticated
          own: member
          all_rows: [staff]
        fields:
          member: {type: relation, to: Member, access: {write: []}}
          city: string
  catalog:
    entities:
      Product:
        access:
          create: [staff]
          read: public
          list: public
          update: [staff, owner]
          delete: [owner]
          where: {status: [active, retired], featured: true}
          all_rows: [staff, owner]
          tenant: true
        fields:
          status: {type: enum, values: [draft, active, retired], default: draft}
          featured: {type: boolean, default: false}
          cost: {type: decimal, access: {read: [staff, owner], write: [owner]}}
          code: {type: string, access: {write: []}, default: X}
          note: {type: string, required: false, access: {write: []}}
          seller_id: {type: reference, to: accounts.Member, required: false, access: {write: []}}
          tags: {type: relation, to: Tag, cardinality: many_to_many}
      Tag: {fields: {name: string}}
      Review:
        access: {create: authenticated, read: authenticated, own: author_id, tenant: true}
        fields:
          author_id: {type: reference, to: accounts.Member, access: {write: []}}
          text: text
"""


def test_a_spec_using_every_auth_option_loads() -> None:
    spec = load_spec_text(EVERY_OPTION)
    auth = spec.auth
    assert auth == Auth(
        service="accounts",
        user_entity="Member",
        roles=["member", "staff", "owner"],
        admin_roles=["owner"],
        signup=False,
        signup_roles=["member"],
        tenancy=True,
        access_token_ttl=300,
        refresh_token_ttl=86400,
        login_throttle=LoginThrottle(attempts=3, window=600),
    )
    product = spec.services["catalog"].entities["Product"]
    assert product.access == EntityAccess(
        create=["staff"],
        read="public",
        list="public",
        update=["staff", "owner"],
        delete=["owner"],
        where={"status": ["active", "retired"], "featured": True},
        all_rows=["staff", "owner"],
        tenant=True,
    )
    cost = product.fields["cost"].access
    assert cost is not None
    assert (cost.read, cost.write) == (["staff", "owner"], ["owner"])


def test_auth_defaults() -> None:
    spec = load_spec_text(
        textwrap.dedent(
            """
            name: shop
            auth: {service: identity, roles: [customer, admin]}
            services:
              identity:
                entities:
                  User: {fields: {email: {type: email, unique: true}}}
            """
        )
    )
    auth = spec.auth
    assert auth is not None
    assert auth.user_entity == "User"
    assert auth.admin_roles == ["admin"]
    assert auth.signup is True
    assert auth.signup_roles == []
    assert auth.tenancy is False
    assert (auth.access_token_ttl, auth.refresh_token_ttl) == (900, 1209600)
    assert (auth.login_throttle.attempts, auth.login_throttle.window) == (5, 900)
    plan = auth_plan(spec)
    assert plan is not None
    assert plan.admin_roles == ["admin"]
    assert plan.user_table == "users"
    assert (plan.throttle_attempts, plan.throttle_window) == (5, 900)


def test_no_auth_section_means_no_auth_plan() -> None:
    spec = load_spec_text(
        "name: shop\nservices:\n  catalog:\n    entities:\n"
        "      Product: {fields: {name: string}}\n"
    )
    assert spec.auth is None
    assert auth_plan(spec) is None


def test_access_plan_defaults() -> None:
    spec = load_spec_text(
        textwrap.dedent(
            """
            name: shop
            auth: {service: identity, roles: [customer, staff, admin], admin_roles: [admin, staff]}
            services:
              identity:
                entities:
                  User: {fields: {email: {type: email, unique: true}}}
                  Address:
                    plural: addresses
                    access: {read: authenticated, own: user}
                    fields:
                      user: {type: relation, to: User}
                      city: {type: string, access: {read: [staff]}}
              catalog:
                entities:
                  Tag: {fields: {name: string}}
                  Product:
                    access: {read: public, create: [staff]}
                    fields: {name: string}
                  Review:
                    access: {read: [customer], list: [staff]}
                    fields: {text: text}
            """
        )
    )
    plan = auth_plan(spec)
    assert plan is not None
    admin = ["admin", "staff"]
    catalog = spec.services["catalog"].entities
    # No access rules: every action is for admin_roles only.
    tag = access_plan(plan, catalog, "Tag")
    assert tag.actions == dict.fromkeys(("create", "read", "list", "update", "delete"), admin)
    assert not tag.scoped
    # The list rule defaults to the read rule; unset actions to admin_roles.
    product = access_plan(plan, catalog, "Product")
    assert product.actions == {
        "create": ["staff"],
        "read": "public",
        "list": "public",
        "update": admin,
        "delete": admin,
    }
    assert not product.needs_token("list")
    assert product.needs_role("update")
    # An explicit list rule wins over the read rule.
    review = access_plan(plan, catalog, "Review")
    assert (review.rule("read"), review.rule("list")) == (["customer"], ["staff"])
    # `own` on a relation is its `<field>_id` column; field rules are kept per column.
    address = access_plan(plan, spec.services["identity"].entities, "Address")
    assert address.own == "user_id"
    assert address.scoped
    assert address.rule("list") == "authenticated"
    assert [(f.column, f.read, f.write) for f in address.fields] == [("city", ["staff"], None)]


@pytest.mark.parametrize(
    "fields",
    [
        "{sku: {type: string, default: none, access: {write: []}}}",
        "{sku: {type: string, required: false, access: {write: []}}}",
        "{active: {type: boolean, default: false, access: {write: []}}}",
    ],
)
def test_read_only_fields_with_a_default_or_optional_load(fields: str) -> None:
    text = (
        "name: shop\nauth: {service: identity, roles: [admin]}\nservices:\n"
        "  identity:\n    entities:\n"
        "      User: {fields: {email: {type: email, unique: true}}}\n"
        f"      Thing: {{fields: {fields}}}\n"
    )
    spec = load_spec_text(text)
    [field] = spec.services["identity"].entities["Thing"].fields.values()
    assert field.access is not None
    assert field.access.write == []
