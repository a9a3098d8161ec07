"""EntityPolicy decisions: action rules, row scopes, field rules, stamping, owner changes.

Pure unit tests (no database): every status code a decision can raise, the scope each
kind of caller gets, and that reads cost no copy when nothing is hidden. The contract
tests in test_row_scopes.py run the scopes against the databases.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from microforge.runtime.auth.policy import (
    ALL_ROWS,
    NO_ROWS,
    OPEN,
    EntityPolicy,
    FieldRule,
    RowScope,
    Rule,
    parse_subject,
)
from microforge.runtime.auth.principal import ANONYMOUS, Principal
from microforge.runtime.problems import Problem

ANN_ID = uuid.UUID("00000000-0000-7000-8000-00000000000a")
BOB_ID = uuid.UUID("00000000-0000-7000-8000-00000000000b")


def user(id: uuid.UUID | str, *roles: str, tenant: str | None = None) -> Principal:
    return Principal(str(id), "user", frozenset(roles), tenant=tenant)


ANN = user(ANN_ID, "customer")
BOB = user(BOB_ID, "customer")
STAFF = user(uuid.UUID(int=7), "staff")
ADMIN = user(uuid.UUID(int=8), "admin")
ROBOT = Principal("apikey:0190a6e4-1c5b-7cc0-8d1e-000000000001", "client", frozenset({"sync"}))
SUPER_ROBOT = Principal("apikey:2", "client", frozenset({"staff"}))

EVERYONE = {a: Rule.authenticated() for a in ("create", "read", "update", "delete")}


def problem(call: Any, *args: Any) -> Problem:
    with pytest.raises(Problem) as caught:
        call(*args)
    return caught.value


# --- rules -----------------------------------------------------------------------------


def test_rules_say_who_may_act() -> None:
    assert Rule.public() == Rule("public")
    assert Rule.authenticated() == Rule("authenticated")
    assert Rule.roles("b", "a") == Rule("roles", frozenset({"a", "b"}))
    assert Rule.roles().allowed == frozenset()
    with pytest.raises(ValueError, match="unknown rule kind"):
        Rule("everyone")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="takes no roles"):
        Rule("public", frozenset({"a"}))


def test_the_constructor_refuses_incomplete_or_unknown_rules() -> None:
    with pytest.raises(ValueError, match="unknown actions"):
        EntityPolicy("Order", {**EVERYONE, "purge": Rule.public()})
    with pytest.raises(ValueError, match=r"no rule for \['delete'\]"):
        EntityPolicy("Order", {a: r for a, r in EVERYONE.items() if a != "delete"})
    with pytest.raises(ValueError, match="own_type"):
        EntityPolicy("Order", EVERYONE, own="customer_id", own_type=float)
    with pytest.raises(ValueError, match="needs a value"):
        EntityPolicy("Order", EVERYONE, where={"status": None})


def test_each_rule_answers_401_403_or_the_scope() -> None:
    policy = EntityPolicy(
        "Order",
        {
            "create": Rule.public(),
            "read": Rule.authenticated(),
            "update": Rule.roles("staff", "admin"),
            "delete": Rule.roles(),  # nobody
        },
    )
    assert policy.authorize(ANONYMOUS, "create") is ALL_ROWS
    assert policy.authorize(ANN, "create") is ALL_ROWS

    unauthenticated = problem(policy.authorize, ANONYMOUS, "read")
    assert unauthenticated.status == 401
    assert unauthenticated.headers == {"WWW-Authenticate": "Bearer"}
    assert policy.authorize(ANN, "read") is ALL_ROWS
    assert policy.authorize(ROBOT, "read") is ALL_ROWS  # machine clients authenticate too

    assert problem(policy.authorize, ANONYMOUS, "update").status == 401  # 401 before 403
    forbidden = problem(policy.authorize, ANN, "update")
    assert forbidden.status == 403
    assert "update Order" in forbidden.detail
    assert policy.authorize(STAFF, "update") is ALL_ROWS
    assert policy.authorize(ADMIN, "update") is ALL_ROWS

    assert problem(policy.authorize, ADMIN, "delete").status == 403
    assert problem(policy.authorize, ANONYMOUS, "delete").status == 401
    with pytest.raises(KeyError):
        policy.authorize(ANN, "purge")


def test_list_follows_read_unless_given() -> None:
    policy = EntityPolicy("Order", {**EVERYONE, "read": Rule.roles("staff")})
    assert policy.rule("list") == Rule.roles("staff")
    assert problem(policy.authorize, ANN, "list").status == 403
    own_list = EntityPolicy("Order", {**EVERYONE, "list": Rule.public()})
    assert own_list.authorize(ANONYMOUS, "list") is ALL_ROWS
    assert problem(own_list.authorize, ANONYMOUS, "read").status == 401


def test_open_lets_everyone_do_everything() -> None:
    for policy in (OPEN, EntityPolicy.open("Thing")):
        for action in ("create", "read", "list", "update", "delete"):
            assert policy.authorize(ANONYMOUS, action) is ALL_ROWS
        assert not policy.scoped
        assert policy.stamp(ANONYMOUS, {"a": 1}) == {"a": 1}
        policy.check_write(ANONYMOUS, ["a"])
        policy.check_owner_change(ANONYMOUS, {"a": 1})


# --- row scopes ------------------------------------------------------------------------


def test_row_scope_shape_names_columns_not_values() -> None:
    scope = RowScope((("customer_id", ANN_ID), ("tenant_id", "t1")), (("status", ("a", "b")),))
    other = RowScope((("customer_id", BOB_ID), ("tenant_id", "t2")), (("status", ("c", "d")),))
    assert scope.shape == other.shape
    assert scope.shape == (("customer_id", "tenant_id"), (("status", 2),))
    assert scope.values == (ANN_ID, "t1", "a", "b")
    assert scope != other
    assert not scope.unrestricted
    assert not scope.empty
    # A different IN-list length or column set is a different shape.
    assert (
        RowScope(any_of=(("status", ("a",)),)).shape
        != RowScope(any_of=(("status", ("a", "b")),)).shape
    )
    assert RowScope((("tenant_id", "t1"),)).shape != RowScope((("customer_id", ANN_ID),)).shape


def test_all_rows_no_rows_and_empty_in_lists() -> None:
    assert ALL_ROWS.unrestricted
    assert not ALL_ROWS.empty
    assert NO_ROWS.empty
    assert not NO_ROWS.unrestricted
    empty_in = RowScope(any_of=(("status", ()),))
    assert empty_in.empty
    assert not empty_in.unrestricted


def test_own_scopes_the_caller_to_their_rows() -> None:
    policy = EntityPolicy("Order", EVERYONE, own="customer_id", own_type=uuid.UUID)
    assert policy.scoped
    assert policy.authorize(ANN, "read") == RowScope((("customer_id", ANN_ID),))
    assert policy.authorize(BOB, "delete") == RowScope((("customer_id", BOB_ID),))
    # The value has the column's type, so the database compares like with like.
    assert isinstance(policy.authorize(ANN, "read").values[0], uuid.UUID)
    # A subject that is no id of that type reaches nothing; it is not an error.
    assert policy.authorize(user("not-a-uuid"), "read") is NO_ROWS
    assert policy.authorize(ROBOT, "read") is NO_ROWS
    assert policy.row_scope(ANONYMOUS) is NO_ROWS


def test_own_subjects_parse_strictly() -> None:
    assert parse_subject(int, "42") == 42
    assert parse_subject(int, "-7") == -7
    for bad in ("", " 42", "42 ", "4_2", "+42", "0x2a", "4.0", "١٢", str(2**63)):
        assert parse_subject(int, bad) is None, bad
    assert parse_subject(int, str(2**63 - 1)) == 2**63 - 1
    assert parse_subject(uuid.UUID, str(ANN_ID).upper()) == ANN_ID
    assert parse_subject(uuid.UUID, "apikey:1") is None
    assert parse_subject(str, "apikey:1") == "apikey:1"
    assert parse_subject(str, "") is None

    policy = EntityPolicy("Note", EVERYONE, own="author_id", own_type=int)
    assert policy.authorize(user("12"), "read") == RowScope((("author_id", 12),))
    assert policy.authorize(user("12x"), "read") is NO_ROWS


def test_where_limits_rows_for_everyone_but_all_rows() -> None:
    policy = EntityPolicy(
        "Product",
        {**EVERYONE, "read": Rule.public()},
        where={"status": "active", "kind": ("a", "b"), "region": ["eu"]},
        all_rows=frozenset({"staff"}),
    )
    scope = RowScope((("status", "active"), ("region", "eu")), (("kind", ("a", "b")),))
    assert policy.authorize(ANONYMOUS, "read") == scope
    assert policy.authorize(ANN, "read") == scope
    assert policy.authorize(ROBOT, "read") == scope
    assert policy.authorize(STAFF, "read") is ALL_ROWS
    assert policy.authorize(SUPER_ROBOT, "read") is ALL_ROWS
    nothing = EntityPolicy("Product", EVERYONE, where={"status": ()})
    assert nothing.authorize(ANN, "read").empty


def test_own_and_where_combine_and_all_rows_lifts_both() -> None:
    policy = EntityPolicy(
        "Order",
        EVERYONE,
        own="customer_id",
        where={"status": ("open", "paid")},
        all_rows=frozenset({"staff"}),
    )
    assert policy.authorize(ANN, "read") == RowScope(
        (("customer_id", ANN_ID),), (("status", ("open", "paid")),)
    )
    assert policy.authorize(STAFF, "read") is ALL_ROWS
    # A machine client is held to own like anyone, unless one of its roles is exempt.
    assert policy.authorize(ROBOT, "read") is NO_ROWS
    assert policy.authorize(SUPER_ROBOT, "read") is ALL_ROWS


def test_tenant_limits_every_caller_without_exception() -> None:
    policy = EntityPolicy(
        "Order", EVERYONE, own="customer_id", tenant=True, all_rows=frozenset({"staff"})
    )
    ann = user(ANN_ID, tenant="t1")
    staff = user(uuid.UUID(int=7), "staff", tenant="t1")
    assert policy.authorize(ann, "read") == RowScope((("tenant_id", "t1"), ("customer_id", ANN_ID)))
    assert policy.authorize(staff, "read") == RowScope((("tenant_id", "t1"),))
    assert policy.authorize(user(uuid.UUID(int=7), "staff", tenant="t2"), "read") == RowScope(
        (("tenant_id", "t2"),)
    )
    # Without a tenant claim: 403, even for all_rows; 401 when not signed in at all.
    assert problem(policy.authorize, STAFF, "read").status == 403
    public = EntityPolicy("Order", {**EVERYONE, "read": Rule.public()}, tenant=True)
    assert problem(public.authorize, ANONYMOUS, "read").status == 401
    assert public.authorize(ann, "read") == RowScope((("tenant_id", "t1"),))
    # row_scope never raises: a caller without a tenant sees nothing.
    assert policy.row_scope(STAFF) is NO_ROWS


def test_scopes_are_per_caller() -> None:
    policy = EntityPolicy("Order", EVERYONE, own="customer_id", tenant=True)
    first = policy.authorize(user(ANN_ID, tenant="t1"), "read")
    assert policy.authorize(user(ANN_ID, tenant="t1"), "update") == first
    assert policy.authorize(user(ANN_ID, tenant="t2"), "read") != first
    assert policy.authorize(user(BOB_ID, tenant="t1"), "read") != first
    # Gaining an all_rows role is a different scope, not a cached one.
    bypassing = EntityPolicy("Order", EVERYONE, own="customer_id", all_rows=frozenset({"staff"}))
    assert bypassing.authorize(user(ANN_ID), "read") == RowScope((("customer_id", ANN_ID),))
    assert bypassing.authorize(user(ANN_ID, "staff"), "read") is ALL_ROWS


def test_row_scope_ignores_action_rules() -> None:
    # Relation targets and link targets ask what a caller can see, not what it may do.
    policy = EntityPolicy(
        "User", {a: Rule.roles("admin") for a in EVERYONE}, own="id", all_rows={"admin"}
    )
    assert problem(policy.authorize, ANN, "read").status == 403
    assert policy.row_scope(ANN) == RowScope((("id", ANN_ID),))
    assert policy.row_scope(ADMIN) is ALL_ROWS


# --- writes ----------------------------------------------------------------------------


FIELDS = {
    "status": FieldRule(write=frozenset({"staff"})),
    "cost": FieldRule(read=frozenset({"staff", "admin"})),
    "secret": FieldRule(read=frozenset(), write=frozenset()),
    "note": FieldRule(),
}


def test_check_write_names_the_field() -> None:
    policy = EntityPolicy("Order", {**EVERYONE, "create": Rule.public()}, fields=FIELDS)
    policy.check_write(ANN, ["title", "note", "cost"])  # no write rule: allowed
    policy.check_write(STAFF, ["status", "title"])
    refused = problem(policy.check_write, ANN, ["title", "status"])
    assert refused.status == 403
    assert refused.extra == {"field": "status"}
    assert "'status'" in refused.detail
    # An empty role list: nobody, not even admins.
    assert problem(policy.check_write, ADMIN, ["secret"]).extra == {"field": "secret"}
    anonymous = problem(policy.check_write, ANONYMOUS, ["status"])
    assert anonymous.status == 401
    assert anonymous.extra == {"field": "status"}
    # A mapping works as the field list (its keys).
    assert problem(policy.check_write, BOB, {"status": "x"}).extra == {"field": "status"}


def test_stamp_sets_owner_and_tenant() -> None:
    policy = EntityPolicy(
        "Order", EVERYONE, own="customer_id", tenant=True, all_rows=frozenset({"staff"})
    )
    ann = user(ANN_ID, tenant="t1")
    data = {"title": "x"}
    stamped = policy.stamp(ann, data)
    assert stamped == {"title": "x", "customer_id": ANN_ID, "tenant_id": "t1"}
    assert data == {"title": "x"}  # the input is not changed
    assert policy.stamp(ann, {"customer_id": None})["customer_id"] == ANN_ID
    # Naming oneself is fine, as a UUID or as its text; naming anyone else is not.
    assert policy.stamp(ann, {"customer_id": ANN_ID})["customer_id"] == ANN_ID
    assert policy.stamp(ann, {"customer_id": str(ANN_ID)})["customer_id"] == str(ANN_ID)
    other = problem(policy.stamp, ann, {"customer_id": BOB_ID})
    assert other.status == 403
    assert other.extra == {"field": "customer_id"}
    # The tenant comes from the token, never from the body.
    assert policy.stamp(ann, {"tenant_id": "t2"})["tenant_id"] == "t1"
    assert problem(policy.stamp, ANN, {}).status == 403  # no tenant claim
    assert problem(policy.stamp, ANONYMOUS, {}).status == 401


def test_stamp_for_callers_exempt_from_own() -> None:
    policy = EntityPolicy("Order", EVERYONE, own="customer_id", all_rows=frozenset({"staff"}))
    staff_id = uuid.UUID(int=7)
    assert policy.stamp(STAFF, {"customer_id": BOB_ID}) == {"customer_id": BOB_ID}
    assert policy.stamp(STAFF, {}) == {"customer_id": staff_id}
    # Exempt but without an id of the owner's type: the owner must be named.
    missing = problem(policy.stamp, SUPER_ROBOT, {"customer_id": None})
    assert missing.status == 422
    assert missing.extra == {"field": "customer_id"}
    assert policy.stamp(SUPER_ROBOT, {"customer_id": ANN_ID}) == {"customer_id": ANN_ID}


def test_stamp_refuses_callers_that_cannot_own() -> None:
    policy = EntityPolicy(
        "Order", {**EVERYONE, "create": Rule.public()}, own="customer_id", own_type=uuid.UUID
    )
    robot = problem(policy.stamp, ROBOT, {})
    assert robot.status == 403
    assert robot.extra == {"field": "customer_id"}
    anonymous = problem(policy.stamp, ANONYMOUS, {})
    assert anonymous.status == 401
    assert anonymous.extra == {"field": "customer_id"}


def test_stamp_leaves_the_self_owned_user_entity_alone() -> None:
    policy = EntityPolicy("User", EVERYONE, own="id")
    assert policy.stamp(ANN, {"email": "a@example.com"}) == {"email": "a@example.com"}
    assert EntityPolicy("Tag", EVERYONE).stamp(ANONYMOUS, {"a": 1}) == {"a": 1}


def test_owner_changes() -> None:
    policy = EntityPolicy("Order", EVERYONE, own="customer_id", all_rows=frozenset({"staff"}))
    policy.check_owner_change(ANN, {"title": "x"})
    policy.check_owner_change(ANN, {"customer_id": ANN_ID})
    policy.check_owner_change(ANN, {"customer_id": str(ANN_ID)})
    for value in (BOB_ID, None, "junk"):
        refused = problem(policy.check_owner_change, ANN, {"customer_id": value})
        assert refused.status == 403
        assert refused.extra == {"field": "customer_id"}
    assert problem(policy.check_owner_change, ROBOT, {"customer_id": ANN_ID}).status == 403
    policy.check_owner_change(STAFF, {"customer_id": BOB_ID})
    EntityPolicy("Tag", EVERYONE).check_owner_change(ANN, {"customer_id": BOB_ID})


# --- reads -----------------------------------------------------------------------------


def test_redact_leaves_out_unreadable_fields() -> None:
    policy = EntityPolicy("Order", EVERYONE, fields=FIELDS)
    row = {"id": 1, "title": "t", "status": "open", "cost": 5, "secret": "s", "note": "n"}
    assert policy.read_restricted_fields() == {"cost", "secret"}
    assert policy.redact(ANN, row) == {"id": 1, "title": "t", "status": "open", "note": "n"}
    assert policy.redact(STAFF, row) == {**{k: v for k, v in row.items() if k != "secret"}}
    assert policy.hidden_fields(ANN) == {"cost", "secret"}
    assert policy.hidden_fields(STAFF) == {"secret"}
    assert not policy.may_read(ANN, "cost")
    assert policy.may_read(STAFF, "cost")
    assert policy.may_read(ANN, "title")
    assert row["cost"] == 5  # the row itself is untouched


def test_redaction_costs_nothing_when_nothing_is_hidden() -> None:
    row = {"id": 1, "cost": 5}
    page = {"items": [row], "total": 1, "next_cursor": None}
    plain = EntityPolicy("Order", EVERYONE)
    assert plain.redact(ANN, row) is row
    assert plain.redact_page(ANN, page) is page
    assert plain.hidden_fields(ANN) == frozenset()
    # Read rules, but this caller may read everything: still no copy.
    ruled = EntityPolicy("Order", EVERYONE, fields={"cost": FieldRule(read=frozenset({"admin"}))})
    assert ruled.redact(ADMIN, row) is row
    assert ruled.redact_page(ADMIN, page) is page


def test_redact_page_redacts_every_item() -> None:
    policy = EntityPolicy("Order", EVERYONE, fields=FIELDS)
    page: dict[str, Any] = {
        "items": [{"id": 1, "cost": 5}, {"id": 2, "cost": 6, "secret": "x"}],
        "total": 7,
        "next_cursor": "abc",
    }
    assert policy.redact_page(ANN, page) == {
        "items": [{"id": 1}, {"id": 2}],
        "total": 7,
        "next_cursor": "abc",
    }
    assert page["items"][0] == {"id": 1, "cost": 5}


def test_queries_cannot_probe_hidden_fields() -> None:
    policy = EntityPolicy("Order", EVERYONE, fields=FIELDS)
    policy.check_query(ANN, {"title": "x", "limit": "5", "sort": "-title", "cursor": "c"})
    for params, parameter in (
        ({"cost": "5"}, "cost"),
        ({"cost__gt": "5"}, "cost__gt"),
        ({"sort": "title,-cost"}, "sort"),
        ({"sort": "+secret"}, "sort"),
        ({"q": "x"}, "q"),
    ):
        refused = problem(policy.check_query, ANN, params, ("title", "cost"))
        assert refused.status == 403
        assert refused.extra == {"parameter": parameter}
    policy.check_query(ANN, {"q": "x"}, ("title",))  # nothing hidden is searched
    policy.check_query(STAFF, {"cost__gt": "5", "sort": "cost"}, ("cost",))


# --- introspection ---------------------------------------------------------------------


def test_introspection_for_generated_code() -> None:
    policy = EntityPolicy(
        "Order",
        EVERYONE,
        own="customer_id",
        tenant=True,
        relation_targets={"product_id": "Product"},
    )
    assert policy.entity == "Order"
    assert policy.own == "customer_id"
    assert policy.tenant
    assert policy.scoped
    assert policy.relation_targets == {"product_id": "Product"}
    assert policy.rule("update") == Rule.authenticated()
    assert EntityPolicy("Tag", EVERYONE, where={"status": "x"}).scoped
    assert not EntityPolicy("Tag", EVERYONE).scoped
