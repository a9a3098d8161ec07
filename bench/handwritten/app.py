"""The baseline: the catalog API as a competent developer would write it by hand.

FastAPI + SQLAlchemy 2 async ORM, Pydantic v2 response models. Same tables as the
generated catalog service (bench/specs/catalog.yaml), same three endpoints the benchmark
calls. Idiomatic, not tuned: an ORM session per request, models validated on the way out.

    DATABASE_URL=sqlite+aiosqlite:///catalog.db python app.py        # create the tables
    DATABASE_URL=... uvicorn app:app                                  # serve
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import DateTime, ForeignKey, Index, Numeric, String, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./catalog.db")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- models -----------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Status(enum.StrEnum):
    draft = "draft"
    active = "active"
    retired = "retired"


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (Index("ix_products_status_price", "status", "price"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    status: Mapped[str] = mapped_column(String(7), default=Status.draft.value)
    stock: Mapped[int]
    category_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("categories.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


# --- database -----------------------------------------------------------------------------

if DATABASE_URL.startswith("sqlite"):
    engine = create_async_engine(DATABASE_URL, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # The usual settings for SQLite behind a web app (the generated service uses them too).
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

else:
    engine = create_async_engine(DATABASE_URL, pool_size=10, max_overflow=10)

SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def create_schema() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


# --- schemas ------------------------------------------------------------------------------


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200)
    price: Decimal = Field(max_digits=10, decimal_places=2, ge=0)
    status: Status = Status.draft
    stock: int
    category_id: uuid.UUID


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    price: Decimal
    status: Status
    stock: int
    category_id: uuid.UUID
    created_at: dt.datetime
    updated_at: dt.datetime


class ProductPage(BaseModel):
    items: list[ProductOut]
    total: int


# --- routes -------------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(title="catalog (hand-written)", lifespan=lifespan)

SORTABLE = {
    "name": Product.name,
    "price": Product.price,
    "stock": Product.stock,
    "created_at": Product.created_at,
}


@app.post("/products", status_code=201, response_model=ProductOut)
async def create_product(body: ProductCreate, session: SessionDep) -> Product:
    product = Product(**body.model_dump())
    session.add(product)
    try:
        await session.commit()
    except IntegrityError:
        raise HTTPException(409, "category_id: no such category") from None
    return product


@app.get("/products", response_model=ProductPage)
async def list_products(
    session: SessionDep,
    status: Status | None = None,
    price__lt: Decimal | None = None,
    sort: str = "-created_at",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    column = SORTABLE.get(sort.lstrip("-"))
    if column is None:
        raise HTTPException(400, f"cannot sort by {sort!r}")
    descending = sort.startswith("-")
    filters = []
    if status is not None:
        filters.append(Product.status == status.value)
    if price__lt is not None:
        filters.append(Product.price < price__lt)
    order = (column.desc(), Product.id.desc()) if descending else (column.asc(), Product.id.asc())
    page = select(Product).where(*filters).order_by(*order).limit(limit).offset(offset)
    items = (await session.scalars(page)).all()
    total = await session.scalar(select(func.count()).select_from(Product).where(*filters))
    return {"items": items, "total": total}


@app.get("/products/{product_id}", response_model=ProductOut)
async def get_product(product_id: uuid.UUID, session: SessionDep) -> Product:
    product = await session.get(Product, product_id)
    if product is None:
        raise HTTPException(404, "product not found")
    return product


if __name__ == "__main__":
    asyncio.run(create_schema())
