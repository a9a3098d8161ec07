"""A small service built on ``microforge.runtime`` the way generated services are.

Tables, resources, schemas and routes mirror what ``microforge generate`` writes
(see ``generator/templates/service``), written out by hand so the runtime contract
tests do not depend on the generator:

* ``owners`` (integer ids) and ``categories`` (integer ids): targets of a required
  many-to-one with ON DELETE RESTRICT and of an optional one with ON DELETE SET NULL;
* ``items`` (UUID ids): one column of every field kind, nullable and not, a unique
  column, a composite unique, many-to-many links to ``tags`` and ``documents``;
* ``documents``: a soft-deleted entity.

This module deliberately has no ``from __future__ import annotations``: the route
factory uses the schema classes and id types it is given as annotations, which
FastAPI reads at definition time.
"""

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Query, Request, Response
from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncEngine

from microforge.runtime.db import create_engine
from microforge.runtime.http import list_parameters, location
from microforge.runtime.http_cache import tagged
from microforge.runtime.jsonio import JSONBytes, Payload
from microforge.runtime.preconditions import if_match
from microforge.runtime.problems import Problem
from microforge.runtime.query import parse_list_query
from microforge.runtime.resource import Link, Resource
from microforge.runtime.service_app import Repositories, create_service_app
from microforge.runtime.types import HttpUrl, UTCDateTime, reject_null

# --- tables -------------------------------------------------------------------------

metadata = sa.MetaData()


def timestamp_columns() -> list[sa.Column[Any]]:
    """created_at, updated_at and the row version, as every generated table has them."""
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("1")),
    ]


owners = sa.Table(
    "owners",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(40), nullable=False),
    *timestamp_columns(),
    sa.UniqueConstraint("name", name="uq_owners_name"),
)

categories = sa.Table(
    "categories",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("label", sa.String(40), nullable=False),
    *timestamp_columns(),
)

STATUSES = ("draft", "active", "retired")

items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(40), nullable=False),
    sa.Column("body", sa.Text(), nullable=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("url", sa.String(2048), nullable=True),
    sa.Column("qty", sa.Integer(), nullable=True),
    sa.Column("big", sa.BigInteger(), nullable=True),
    sa.Column("price", sa.Numeric(10, 2), nullable=True),
    sa.Column("ratio", sa.Double(), nullable=True),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("born", sa.Date(), nullable=True),
    sa.Column("seen_at", UTCDateTime(), nullable=True),
    sa.Column("token", sa.Uuid(), nullable=True),
    sa.Column("status", sa.String(7), nullable=False, server_default=sa.text("'draft'")),
    sa.Column("data", sa.JSON(), nullable=True),
    sa.Column("code", sa.String(12), nullable=True),
    sa.Column(
        "owner_id",
        sa.Integer(),
        sa.ForeignKey("owners.id", name="fk_items_owner_id", ondelete="RESTRICT"),
        nullable=False,
    ),
    sa.Column(
        "category_id",
        sa.Integer(),
        sa.ForeignKey("categories.id", name="fk_items_category_id", ondelete="SET NULL"),
        nullable=True,
    ),
    *timestamp_columns(),
    sa.UniqueConstraint("code", name="uq_items_code"),
    sa.UniqueConstraint("name", "owner_id", name="uq_items_name_owner_id"),
    sa.Index("ix_items_owner_id", "owner_id"),
    sa.Index("ix_items_category_id", "category_id"),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(40), nullable=False),
    *timestamp_columns(),
    sa.UniqueConstraint("name", name="uq_tags_name"),
)

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("title", sa.String(80), nullable=False),
    sa.Column("pages", sa.Integer(), nullable=True),
    *timestamp_columns(),
    sa.Column("deleted_at", UTCDateTime(), nullable=True),
)


def _link_table(name: str, source: str, target: str, target_table: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column(
            source,
            sa.Uuid(),
            sa.ForeignKey("items.id", name=f"fk_{name}_{source}", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            target,
            sa.Uuid(),
            sa.ForeignKey(f"{target_table}.id", name=f"fk_{name}_{target}", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Index(f"ix_{name}_{target}", target),
    )


item_tags = _link_table("item_tags", "item_id", "tag_id", "tags")
item_documents = _link_table("item_documents", "item_id", "document_id", "documents")

# --- resources ----------------------------------------------------------------------

ITEM_SORTABLE = (
    "name",
    "email",
    "qty",
    "big",
    "price",
    "ratio",
    "active",
    "born",
    "seen_at",
    "token",
    "status",
    "code",
    "owner_id",
    "category_id",
)

owner_resource = Resource(name="Owner", table=owners, sortable=("name",), searchable=("name",))
category_resource = Resource(name="Category", table=categories, sortable=("label",))
item_resource = Resource(
    name="Item",
    table=items,
    sortable=ITEM_SORTABLE,
    searchable=("name", "body", "email"),
    links={
        "tags": Link(
            name="tags",
            table=item_tags,
            source_column="item_id",
            target_column="tag_id",
            target="Tag",
        ),
        "documents": Link(
            name="documents",
            table=item_documents,
            source_column="item_id",
            target_column="document_id",
            target="Document",
        ),
    },
)
tag_resource = Resource(name="Tag", table=tags, sortable=("name",), searchable=("name",))
document_resource = Resource(
    name="Document", table=documents, soft_delete=True, sortable=("title", "pages")
)

ALL = (owner_resource, category_resource, item_resource, tag_resource, document_resource)

# --- schemas ------------------------------------------------------------------------


class OwnerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=40, min_length=1)


class OwnerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=40, min_length=1)

    @field_validator("name", mode="before")
    @classmethod
    def _reject_null(cls, value: object) -> object:
        return reject_null(value)


class CategoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(max_length=40)


class CategoryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(None, max_length=40)

    @field_validator("label", mode="before")
    @classmethod
    def _reject_null(cls, value: object) -> object:
        return reject_null(value)


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=40, min_length=1)
    body: str | None = Field(None)
    email: EmailStr | None = Field(None)
    url: HttpUrl | None = Field(None)
    qty: int | None = Field(None, ge=-(2**31), le=2**31 - 1)
    big: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    price: Decimal | None = Field(None, max_digits=10, decimal_places=2, allow_inf_nan=False)
    ratio: float | None = Field(None, allow_inf_nan=False)
    active: bool = Field(False)
    born: dt.date | None = Field(None)
    seen_at: dt.datetime | None = Field(None)
    token: uuid.UUID | None = Field(None)
    status: Literal["draft", "active", "retired"] = Field("draft")
    data: Any | None = Field(None)
    # No max_length on purpose: the database itself must refuse an overlong value.
    code: str | None = Field(None)
    # Like generated relation ids: no bounds, the database checks the reference.
    owner_id: int
    category_id: int | None = Field(None)


class ItemUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=40, min_length=1)
    body: str | None = Field(None)
    email: EmailStr | None = Field(None)
    url: HttpUrl | None = Field(None)
    qty: int | None = Field(None, ge=-(2**31), le=2**31 - 1)
    big: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    price: Decimal | None = Field(None, max_digits=10, decimal_places=2, allow_inf_nan=False)
    ratio: float | None = Field(None, allow_inf_nan=False)
    active: bool | None = Field(None)
    born: dt.date | None = Field(None)
    seen_at: dt.datetime | None = Field(None)
    token: uuid.UUID | None = Field(None)
    status: Literal["draft", "active", "retired"] | None = Field(None)
    data: Any | None = Field(None)
    code: str | None = Field(None)
    owner_id: int | None = Field(None)
    category_id: int | None = Field(None)

    @field_validator("name", "active", "status", "owner_id", mode="before")
    @classmethod
    def _reject_null(cls, value: object) -> object:
        return reject_null(value)


class TagCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=40)


class TagUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=40)

    @field_validator("name", mode="before")
    @classmethod
    def _reject_null(cls, value: object) -> object:
        return reject_null(value)


class DocumentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(max_length=80)
    pages: int | None = Field(None, ge=0, le=2**31 - 1)


class DocumentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=80)
    pages: int | None = Field(None, ge=0, le=2**31 - 1)

    @field_validator("title", mode="before")
    @classmethod
    def _reject_null(cls, value: object) -> object:
        return reject_null(value)


# --- routes -------------------------------------------------------------------------


def entity_router(
    repos: Repositories,
    resource: Resource,
    path: str,
    create_schema: type[BaseModel],
    update_schema: type[BaseModel],
) -> APIRouter:
    """The routes a generated ``routes/<plural>.py`` declares, for any entity."""
    repo = repos[resource.name]
    api = APIRouter(prefix=path)
    id_type = resource.id_python_type

    def not_found(id: Any) -> Problem:
        return Problem(404, f"No {resource.name} with id {id}.")

    @api.post("", status_code=201)
    async def create(body: create_schema, request: Request) -> Response:
        item = await repo.create(body.model_dump())
        return JSONBytes(
            item, status_code=201, headers={"Location": location(request, f"{path}/{item['id']}")}
        )

    @api.get("", openapi_extra={"parameters": list_parameters(resource)})
    async def list_rows(request: Request) -> Response:
        query = parse_list_query(request.query_params, resource)
        return JSONBytes(await repo.list(query))

    @api.get("/{id}")
    async def get(id: id_type) -> Response:
        item = await repo.read_one(id)
        if item is None:
            raise not_found(id)
        return tagged(item)

    @api.patch("/{id}")
    async def update(id: id_type, body: update_schema, request: Request) -> Response:
        condition = if_match(request.headers.get("if-match"))
        changes = body.model_dump(exclude_unset=True)
        item = await repo.update(id, changes, expected=condition.versions)
        if item is None:
            raise condition.absent(not_found(id))
        return tagged(Payload.row(item))

    @api.delete("/{id}", status_code=204)
    async def delete(id: id_type, request: Request) -> Response:
        condition = if_match(request.headers.get("if-match"))
        if not await repo.delete(id, expected=condition.versions):
            raise condition.absent(not_found(id))
        return Response(status_code=204)

    for link_name, link in resource.links.items():
        _link_routes(api, repos, resource, link_name, link, not_found)
    return api


def _link_routes(
    api: APIRouter,
    repos: Repositories,
    resource: Resource,
    link_name: str,
    link: Link,
    not_found: Any,
) -> None:
    repo = repos[resource.name]
    target_repo = repos[link.target]
    id_type = resource.id_python_type
    target_id_type = target_repo.resource.id_python_type

    @api.get(f"/{{id}}/{link_name}")
    async def list_links(
        id: id_type,
        limit: int = Query(50, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> Response:
        page = await repo.list_links(link, target_repo, id, limit, offset)
        if page is None:
            raise not_found(id)
        return JSONBytes(page)

    @api.put(f"/{{id}}/{link_name}/{{target_id}}", status_code=204)
    async def add_link(id: id_type, target_id: target_id_type) -> Response:
        await repo.add_link(link, target_repo, id, target_id)
        return Response(status_code=204)

    @api.delete(f"/{{id}}/{link_name}/{{target_id}}", status_code=204)
    async def remove_link(id: id_type, target_id: target_id_type) -> Response:
        if not await repo.remove_link(link, target_repo, id, target_id):
            raise Problem(404, "These rows are not linked.")
        return Response(status_code=204)


ROUTES: tuple[tuple[Resource, str, type[BaseModel], type[BaseModel]], ...] = (
    (owner_resource, "/owners", OwnerCreate, OwnerUpdate),
    (category_resource, "/categories", CategoryCreate, CategoryUpdate),
    (item_resource, "/items", ItemCreate, ItemUpdate),
    (tag_resource, "/tags", TagCreate, TagUpdate),
    (document_resource, "/documents", DocumentCreate, DocumentUpdate),
)


def create_app(engine: AsyncEngine) -> FastAPI:
    """The service app over ``engine`` (whose database already has the tables)."""
    repos = Repositories.build(engine, ALL)
    return create_service_app(
        title="runtime contract",
        version="1.0.0",
        description="Every runtime feature on one small domain.",
        engine=engine,
        routers=[entity_router(repos, *route) for route in ROUTES],
    )


async def create_database_engine(url: str, tables: sa.MetaData = metadata) -> AsyncEngine:
    """An engine from the runtime's ``create_engine`` with ``tables`` created (by default
    this module's)."""
    engine = create_engine(url, pool_size=5)
    async with engine.begin() as conn:
        await conn.run_sync(tables.create_all)
    return engine


SEED_SCHEMAS: Mapping[str, type[BaseModel]] = {
    "Owner": OwnerCreate,
    "Category": CategoryCreate,
    "Item": ItemCreate,
    "Tag": TagCreate,
    "Document": DocumentCreate,
}
