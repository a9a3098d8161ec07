"""Row scopes against real databases: a row outside the caller's scope is a missing row.

Runs on SQLite, PostgreSQL and MariaDB (``engine_url``). Scopes come from real
EntityPolicy decisions for real principals, so these tests hold the policy and the
repository to the promise together: another user's row cannot be read, listed,
counted, changed, deleted or linked; filters, search, sorting and cursors cannot widen
the scope; refused writes leave the database as it was; and a scope that can match
nothing never reaches the database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from support.runtime_service import timestamp_columns

from microforge.runtime.auth.policy import NO_ROWS, EntityPolicy, RowScope, Rule
from microforge.runtime.auth.principal import ANONYMOUS, Principal
from microforge.runtime.db import ServiceEngine, create_engine
from microforge.runtime.problems import Problem
from microforge.runtime.query import parse_list_query
from microforge.runtime.repository import Repository
from microforge.runtime.resource import Link, Resource
from microforge.runtime.types import UTCDateTime

metadata = sa.MetaData()


orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("customer_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("title", sa.String(40), nullable=False),
    sa.Column("rush", sa.Boolean(), nullable=False, default=False),
    *timestamp_columns(),
)
tags = sa.Table(
    "tags",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(40), nullable=False),
    sa.Column("visibility", sa.String(10), nullable=False),
    *timestamp_columns(),
)
order_tags = sa.Table(
    "order_tags",
    metadata,
    sa.Column(
        "order_id", sa.Uuid(), sa.ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("tag_id", sa.Uuid(), sa.ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
)
# Integer ids and an integer owner; soft-deleted; a relation to orders.
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("author_id", sa.Integer(), nullable=False),
    sa.Column("order_id", sa.Uuid(), sa.ForeignKey("orders.id"), nullable=True),
    sa.Column("body", sa.String(40), nullable=False),
    *timestamp_columns(),
    sa.Column("deleted_at", UTCDateTime(), nullable=True),
)

order_resource = Resource(
    name="Order",
    table=orders,
    sortable=("title", "status", "customer_id", "rush"),
    searchable=("title",),
    links={
        "tags": Link(
            name="tags",
            table=order_tags,
            source_column="order_id",
            target_column="tag_id",
            target="Tag",
        )
    },
)
tag_resource = Resource(name="Tag", table=tags, sortable=("name",))
note_resource = Resource(name="Note", table=notes, soft_delete=True, sortable=("body",))

EVERYONE = {a: Rule.authenticated() for a in ("create", "read", "update", "delete")}
STAFF_ROLES = frozenset({"staff"})

# Orders: each customer sees their own; staff see every order of their tenant.
OWN_ORDERS = EntityPolicy(
    "Order", EVERYONE, own="customer_id", own_type=uuid.UUID, tenant=True, all_rows=STAFF_ROLES
)
# Orders seen by status only (a catalogue-like policy): open and paid for all, staff all.
OPEN_ORDERS = EntityPolicy(
    "Order", EVERYONE, where={"status": ("open", "paid")}, all_rows=STAFF_ROLES
)
TAGS = EntityPolicy("Tag", EVERYONE, where={"visibility": "public"}, all_rows=STAFF_ROLES)
NOTES = EntityPolicy(
    "Note", EVERYONE, own="author_id", own_type=int, relation_targets={"order_id": "Order"}
)

ANN_ID, BOB_ID, CYD_ID, STAFF_ID = (uuid.UUID(int=n, version=4) for n in (1, 2, 3, 4))
ANN = Principal(str(ANN_ID), "user", frozenset({"customer"}), tenant="t1")
BOB = Principal(str(BOB_ID), "user", frozenset({"customer"}), tenant="t1")
CYD = Principal(str(CYD_ID), "user", frozenset({"customer"}), tenant="t2")
STAFF = Principal(str(STAFF_ID), "user", STAFF_ROLES, tenant="t1")
ROBOT = Principal("apikey:1", "client", frozenset({"sync"}), tenant="t1")


@dataclass
class Db:
    engine: AsyncEngine
    orders: Repository
    tags: Repository
    notes: Repository

    @property
    def repos(self) -> dict[str, Repository]:
        return {"Order": self.orders, "Tag": self.tags, "Note": self.notes}

    async def order(self, caller: Principal, title: str, **values: Any) -> dict[str, Any]:
        data = OWN_ORDERS.stamp(caller, {"title": title, "status": "open", **values})
        return await self.orders.create(data)

    async def snapshot(self) -> dict[str, list[Any]]:
        """Every row of every table, to show a refused write changed nothing."""
        async with self.engine.connect() as conn:
            return {
                table.name: [
                    tuple(row)
                    for row in await conn.execute(
                        sa.select(table).order_by(*table.primary_key.columns)
                    )
                ]
                for table in metadata.sorted_tables
            }


@pytest.fixture
async def db(engine_url: str) -> AsyncIterator[Db]:
    engine = create_engine(engine_url, pool_size=5)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield Db(
            engine,
            Repository(engine, order_resource),
            Repository(engine, tag_resource),
            Repository(engine, note_resource),
        )
    finally:
        await engine.dispose()


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements SQLAlchemy runs on ``engine`` inside the block."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)


async def listed(
    repo: Repository, scope: RowScope, params: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return await repo.list(parse_list_query(dict(params or {}), repo.resource), scope)


def ids(page: Mapping[str, Any]) -> list[uuid.UUID]:
    return [row["id"] for row in page["items"]]


# --- own --------------------------------------------------------------------------------


async def test_a_user_cannot_reach_another_users_rows_by_id(db: Db) -> None:
    mine = await db.order(ANN, "mine")
    theirs = await db.order(BOB, "theirs")
    ann = OWN_ORDERS.authorize(ANN, "read")

    assert await db.orders.get(mine["id"], ann) == mine
    assert await db.orders.exists(mine["id"], scope=ann)
    assert await db.orders.get(theirs["id"], ann) is None
    assert not await db.orders.exists(theirs["id"], scope=ann)
    assert not await db.orders.visible(theirs["id"], ann)
    # Exactly what a missing row answers: no existence oracle.
    missing = uuid.uuid4()
    assert await db.orders.get(missing, ann) is None

    before = await db.snapshot()
    update = OWN_ORDERS.authorize(ANN, "update")
    assert await db.orders.update(theirs["id"], {"title": "hijacked"}, update) is None
    assert not await db.orders.delete(theirs["id"], OWN_ORDERS.authorize(ANN, "delete"))
    assert await db.snapshot() == before
    assert await db.orders.get(theirs["id"]) == theirs

    # The owner can change and delete their own row.
    changed = await db.orders.update(mine["id"], {"title": "renamed"}, update)
    assert changed is not None
    assert changed["title"] == "renamed"
    # Unchanged values still find the row (MariaDB reports no matched rows then).
    assert await db.orders.update(mine["id"], {"title": "renamed"}, update) is not None
    assert await db.orders.delete(mine["id"], OWN_ORDERS.authorize(ANN, "delete"))
    assert await db.orders.get(mine["id"]) is None


async def test_lists_show_and_count_only_own_rows(db: Db) -> None:
    ann_rows = [await db.order(ANN, f"ann {n}", rush=n % 2 == 0) for n in range(5)]
    bob_rows = [await db.order(BOB, f"bob {n}") for n in range(3)]
    ann = OWN_ORDERS.authorize(ANN, "list")

    page = await listed(db.orders, ann)
    assert ids(page) == [row["id"] for row in ann_rows]  # creation order
    assert page["total"] == 5
    bob_page = await listed(db.orders, OWN_ORDERS.authorize(BOB, "list"))
    assert ids(bob_page) == [row["id"] for row in bob_rows]
    assert bob_page["total"] == 3

    # Filters, search and sorts narrow the scope; they never widen it.
    for params in (
        {"customer_id": str(BOB_ID)},
        {"customer_id__in": f"{BOB_ID},{CYD_ID}"},
        {"customer_id__ne": str(ANN_ID)},
        {"title__startswith": "bob"},
        {"q": "bob"},
        {"id": str(bob_rows[0]["id"])},
    ):
        narrowed = await listed(db.orders, ann, params)
        assert narrowed == {"items": [], "total": 0, "next_cursor": None}, params
    both = await listed(db.orders, ann, {"q": "n", "sort": "-customer_id"})
    assert sorted(ids(both)) == sorted(row["id"] for row in ann_rows)
    rush = await listed(db.orders, ann, {"rush": "true"})
    assert ids(rush) == [row["id"] for row in ann_rows if row["rush"]]
    assert rush["total"] == 3


async def test_cursors_and_offsets_walk_only_the_scope(db: Db) -> None:
    # Interleave the owners so every page boundary has foreign rows next to it.
    for n in range(6):
        await db.order(ANN if n % 2 else BOB, f"t{n}")
        await db.order(BOB if n % 2 else ANN, f"u{n}")
    ann = OWN_ORDERS.authorize(ANN, "list")
    expected = ids(await listed(db.orders, ann, {"sort": "title"}))
    assert len(expected) == 6

    walked: list[uuid.UUID] = []
    cursor: str | None = None
    for _ in range(10):
        params = {"sort": "title", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await listed(db.orders, ann, params)
        assert page["total"] == 6
        walked += ids(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == expected

    by_offset: list[uuid.UUID] = []
    for offset in range(0, 8, 2):
        page = await listed(db.orders, ann, {"sort": "title", "limit": "2", "offset": str(offset)})
        by_offset += ids(page)
    assert by_offset == expected

    # A cursor made by someone else is only a position in the sort order.
    bob = OWN_ORDERS.authorize(BOB, "list")
    bob_first = await listed(db.orders, bob, {"sort": "title", "limit": "1"})
    assert bob_first["next_cursor"] is not None
    after = await listed(db.orders, ann, {"sort": "title", "cursor": bob_first["next_cursor"]})
    assert set(ids(after)) <= set(expected)
    assert after["total"] == 6


# --- tenant -----------------------------------------------------------------------------


async def test_tenants_are_isolated_even_for_all_rows(db: Db) -> None:
    ann_order = await db.order(ANN, "t1 order")
    cyd_order = await db.order(CYD, "t2 order")
    staff_t2 = Principal(str(STAFF_ID), "user", STAFF_ROLES, tenant="t2")

    staff = OWN_ORDERS.authorize(STAFF, "read")
    assert await db.orders.get(ann_order["id"], staff) == ann_order
    assert await db.orders.get(cyd_order["id"], staff) is None
    assert ids(await listed(db.orders, staff)) == [ann_order["id"]]
    other = OWN_ORDERS.authorize(staff_t2, "read")
    assert ids(await listed(db.orders, other)) == [cyd_order["id"]]
    assert await db.orders.get(ann_order["id"], other) is None
    before = await db.snapshot()
    assert await db.orders.update(ann_order["id"], {"title": "x"}, other) is None
    assert not await db.orders.delete(ann_order["id"], other)
    assert await db.snapshot() == before
    # Even with a filter naming the other tenant.
    assert (await listed(db.orders, staff, {"tenant_id": "t2"}))["total"] == 0


async def test_tenant_ids_compare_exactly_on_every_database(db: Db) -> None:
    # MariaDB's usual collations ignore case and trailing spaces; a tenant must not.
    exact = await db.order(STAFF, "exact")
    for lookalike in ("T1", "t1 ", " t1"):
        await db.orders.create(
            {
                **OWN_ORDERS.stamp(STAFF, {"title": lookalike}),
                "status": "open",
                "tenant_id": lookalike,
            }
        )
    staff = OWN_ORDERS.authorize(STAFF, "list")
    page = await listed(db.orders, staff)
    assert ids(page) == [exact["id"]]
    assert page["total"] == 1


# --- where and all_rows -----------------------------------------------------------------


async def test_where_filters_visibility_and_all_rows_lifts_it(db: Db) -> None:
    rows = {
        status: await db.order(ANN, status, status=status)
        for status in ("open", "paid", "draft", "closed")
    }
    visible = [rows["open"]["id"], rows["paid"]["id"]]
    bob = OPEN_ORDERS.authorize(BOB, "read")
    assert ids(await listed(db.orders, bob)) == visible
    assert (await listed(db.orders, bob, {"status": "draft"}))["total"] == 0
    assert await db.orders.get(rows["draft"]["id"], bob) is None
    assert await db.orders.get(rows["paid"]["id"], bob) == rows["paid"]
    # A status outside the list is just as hidden for updates and deletes.
    assert await db.orders.update(rows["closed"]["id"], {"title": "x"}, bob) is None
    assert not await db.orders.delete(rows["draft"]["id"], bob)

    staff = OPEN_ORDERS.authorize(STAFF, "read")
    assert staff.unrestricted
    assert (await listed(db.orders, staff))["total"] == 4
    assert await db.orders.get(rows["draft"]["id"], staff) == rows["draft"]
    assert await db.orders.delete(rows["closed"]["id"], staff)

    # An update that moves a row out of the scope answers the changed row; afterwards
    # the row is out of reach like any other.
    moved = await db.orders.update(rows["open"]["id"], {"status": "draft"}, bob)
    assert moved is not None
    assert moved["status"] == "draft"
    assert await db.orders.get(rows["open"]["id"], bob) is None


async def test_all_rows_reach_every_owner(db: Db) -> None:
    ann_order, bob_order = await db.order(ANN, "a"), await db.order(BOB, "b")
    staff = OWN_ORDERS.authorize(STAFF, "update")
    assert sorted(ids(await listed(db.orders, staff))) == sorted([ann_order["id"], bob_order["id"]])
    changed = await db.orders.update(bob_order["id"], {"title": "fixed"}, staff)
    assert changed is not None
    assert changed["title"] == "fixed"
    assert await db.orders.delete(ann_order["id"], staff)


# --- scopes that match nothing ----------------------------------------------------------


async def test_empty_scopes_never_reach_the_database(db: Db) -> None:
    order = await db.order(ANN, "a")
    note = await db.notes.create({"author_id": 5, "body": "n"})
    link = order_resource.links["tags"]
    robot = OWN_ORDERS.authorize(ROBOT, "read")  # a machine client owns nothing
    assert robot is NO_ROWS
    # An integer subject beyond the column's range matches no row; it must not fail.
    huge = NOTES.authorize(Principal(str(2**40), "user", frozenset()), "read")
    assert not huge.empty
    query = parse_list_query({}, order_resource)
    with statements(db.engine) as seen:
        assert await db.orders.get(order["id"], robot) is None
        assert await db.orders.list(query, robot) == {"items": [], "total": 0, "next_cursor": None}
        assert not await db.orders.exists(order["id"], scope=robot)
        assert await db.orders.update(order["id"], {"title": "x"}, robot) is None
        assert not await db.orders.delete(order["id"], robot)
        assert await db.orders.list_links(link, db.tags, order["id"], 10, 0, scope=robot) is None
        assert await db.notes.get(note["id"], huge) is None
        assert (await listed(db.notes, huge))["total"] == 0
        assert not await db.notes.delete(note["id"], huge)
    assert seen == []
    assert await db.notes.get(note["id"], NOTES.authorize(Principal("5", "user"), "read")) == note


# --- integer owners and soft delete -------------------------------------------------------


async def test_integer_owners_with_soft_delete(db: Db) -> None:
    five, six = Principal("5", "user"), Principal("6", "user")
    mine = await db.notes.create(NOTES.stamp(five, {"body": "mine"}))
    theirs = await db.notes.create(NOTES.stamp(six, {"body": "theirs"}))
    assert mine["author_id"] == 5
    scope = NOTES.authorize(five, "delete")
    assert not await db.notes.delete(theirs["id"], scope)
    assert await db.notes.get(theirs["id"]) == theirs
    assert await db.notes.delete(mine["id"], scope)
    assert await db.notes.get(mine["id"], scope) is None
    assert not await db.notes.delete(mine["id"], scope)  # already gone
    assert (await listed(db.notes, scope))["total"] == 0
    assert ids(await listed(db.notes, NOTES.authorize(six, "list"))) == [theirs["id"]]


# --- relations and links ------------------------------------------------------------------


async def test_relation_targets_must_be_visible(db: Db) -> None:
    ann_order, bob_order = await db.order(ANN, "a"), await db.order(BOB, "b")
    policies = {"Order": OWN_ORDERS, "Tag": TAGS, "Note": NOTES}
    writer = ANN
    # Notes anyone may write; the order a note points at must be one the writer sees.
    note_policy = EntityPolicy("Note", EVERYONE, relation_targets={"order_id": "Order"})
    await note_policy.check_relations(writer, {"order_id": ann_order["id"]}, policies, db.repos)
    await note_policy.check_relations(writer, {"order_id": None}, policies, db.repos)
    for target in (bob_order["id"], uuid.uuid4()):  # hidden and missing look the same
        with pytest.raises(Problem) as caught:
            await note_policy.check_relations(writer, {"order_id": target}, policies, db.repos)
        assert caught.value.status == 422
        assert caught.value.extra == {"field": "order_id"}
        assert caught.value.detail == f"No Order with id {target}."
    # Staff see every order of their tenant.
    await note_policy.check_relations(STAFF, {"order_id": bob_order["id"]}, policies, db.repos)


async def test_links_respect_both_scopes(db: Db) -> None:
    link = order_resource.links["tags"]
    mine, theirs = await db.order(ANN, "mine"), await db.order(BOB, "theirs")
    public = await db.tags.create({"name": "public", "visibility": "public"})
    hidden = await db.tags.create({"name": "hidden", "visibility": "staff"})
    ann, ann_tags = OWN_ORDERS.authorize(ANN, "update"), TAGS.row_scope(ANN)
    staff, staff_tags = OWN_ORDERS.authorize(STAFF, "update"), TAGS.row_scope(STAFF)

    await db.orders.add_link(
        link, db.tags, mine["id"], public["id"], scope=ann, target_scope=ann_tags
    )
    # Staff attach a tag Ann cannot see; Ann's listing neither shows nor counts it.
    await db.orders.add_link(
        link, db.tags, mine["id"], hidden["id"], scope=staff, target_scope=staff_tags
    )
    page = await db.orders.list_links(
        link, db.tags, mine["id"], 10, 0, scope=ann, target_scope=ann_tags
    )
    assert page == {"items": [public], "total": 1, "next_cursor": None}
    staff_page = await db.orders.list_links(
        link, db.tags, mine["id"], 10, 0, scope=staff, target_scope=staff_tags
    )
    assert staff_page is not None
    assert staff_page["total"] == 2
    # Someone else's order: 404 like a missing one, for listing, linking and unlinking.
    assert (
        await db.orders.list_links(
            link, db.tags, theirs["id"], 10, 0, scope=ann, target_scope=ann_tags
        )
        is None
    )
    before = await db.snapshot()
    for call, target, mentions in (
        (db.orders.add_link, (theirs["id"], public["id"]), "Order"),
        (db.orders.remove_link, (theirs["id"], public["id"]), "Order"),
        (db.orders.add_link, (mine["id"], hidden["id"]), "Tag"),
        (db.orders.remove_link, (mine["id"], hidden["id"]), "Tag"),
    ):
        with pytest.raises(Problem) as caught:
            await call(link, db.tags, *target, scope=ann, target_scope=ann_tags)
        assert caught.value.status == 404
        assert mentions in caught.value.detail
    assert await db.snapshot() == before
    # A target scope that matches nothing: the source still answers, with no targets.
    empty = await db.orders.list_links(
        link, db.tags, mine["id"], 10, 0, scope=ann, target_scope=NO_ROWS
    )
    assert empty == {"items": [], "total": 0, "next_cursor": None}
    assert await db.orders.remove_link(
        link, db.tags, mine["id"], public["id"], scope=ann, target_scope=ann_tags
    )


# --- creation ---------------------------------------------------------------------------


async def test_stamped_creates_belong_to_the_caller(db: Db) -> None:
    created = await db.orders.create(OWN_ORDERS.stamp(ANN, {"title": "x", "status": "open"}))
    assert created["customer_id"] == ANN_ID
    assert created["tenant_id"] == "t1"
    before = await db.snapshot()
    with pytest.raises(Problem) as caught:
        OWN_ORDERS.stamp(BOB, {"title": "y", "status": "open", "customer_id": ANN_ID})
    assert caught.value.status == 403
    with pytest.raises(Problem):
        OWN_ORDERS.stamp(ANONYMOUS, {"title": "y", "status": "open"})
    assert await db.snapshot() == before


# --- the PostgreSQL fast path ------------------------------------------------------------


async def test_asyncpg_fast_path_agrees_with_sqlalchemy_under_scopes(postgres_url: str) -> None:
    fast = create_engine(postgres_url, pool_size=2)
    assert isinstance(fast, ServiceEngine)
    plain = ServiceEngine(fast.sync_engine, driver_pool_size=0)  # SQLAlchemy only
    try:
        async with fast.begin() as conn:
            await conn.run_sync(metadata.create_all)
        db = Db(
            fast,
            Repository(fast, order_resource),
            Repository(fast, tag_resource),
            Repository(fast, note_resource),
        )
        slow = Repository(plain, order_resource)
        rows = [
            await db.order(who, f"{who.subject[-1]} {status}", status=status, rush=rush)
            for who in (ANN, BOB, CYD, STAFF)
            for status in ("open", "draft")
            for rush in (False, True)
        ]
        scopes = [OWN_ORDERS.authorize(who, "read") for who in (ANN, BOB, CYD, STAFF)] + [
            OPEN_ORDERS.authorize(BOB, "read"),
            RowScope((("rush", True), ("tenant_id", "t1")), (("status", ("open", "paid")),)),
            RowScope((("rush", False),)),
        ]
        probes = [row["id"] for row in rows] + [uuid.uuid4()]
        with statements(fast) as seen:
            answers = [await db.orders.get(id, scope) for scope in scopes for id in probes]
        assert seen == []  # every scoped GET went through asyncpg
        with statements(fast) as seen:
            expected = [await slow.get(id, scope) for scope in scopes for id in probes]
        assert len(seen) == len(expected)
        assert answers == expected
        totals = [(await listed(db.orders, scope))["total"] for scope in scopes]
        assert sum(answer is not None for answer in answers) == sum(totals)
    finally:
        await fast.dispose()
