"""A payments service on the runtime, keyed the way generated routes are.

``POST /payments`` and ``PATCH /payments/{id}`` run through ``IdempotentRoute.run`` with a
policy the test chooses. The amount steers the operation, so tests can make it fail at
chosen points *after* its insert:

* 400: raises a Problem (a client error), 500: raises RuntimeError (a server error),
  503: returns a 503 response without raising;
* 777 (POST): waits on ``app.state.gate`` (an asyncio.Event) before inserting, holding
  its key meanwhile;
* 999: hangs forever after inserting when the process runs with ``PAYMENTS_HANG=1``
  (the crash test kills it there).

The caller comes from ``X-Caller`` and ``X-Tenant`` headers: scoping is by Principal,
whatever authenticated it.
"""

import asyncio
import os
import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine
from support.runtime_service import timestamp_columns

from microforge.runtime.auth.principal import Principal
from microforge.runtime.idempotency.handler import Idempotency
from microforge.runtime.idempotency.policy import IdempotencyPolicy
from microforge.runtime.idempotency.store import idempotency_table
from microforge.runtime.jsonio import JSONBytes
from microforge.runtime.problems import Problem
from microforge.runtime.repository import Repository
from microforge.runtime.resource import Resource
from microforge.runtime.service_app import create_service_app

metadata = sa.MetaData()
payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("amount", sa.Integer(), nullable=False),
    sa.Column("reference", sa.String(40), nullable=True, unique=True),
    *timestamp_columns(),
)
idempotency_table(metadata)
resource = Resource(name="Payment", table=payments)


class PaymentIn(BaseModel):
    amount: int
    reference: str | None = None


class PaymentChange(BaseModel):
    amount: int


def caller_of(
    x_caller: Annotated[str, Header()] = "alice", x_tenant: Annotated[str | None, Header()] = None
) -> Principal:
    return Principal(subject=x_caller, kind="user", tenant=x_tenant)


def create_app(
    engine: AsyncEngine,
    policy: IdempotencyPolicy = IdempotencyPolicy(),
    update_policy: IdempotencyPolicy | None = None,
    redis_url: str | None = None,
    service: str = "payments",
    purge_every: float = 300.0,
) -> FastAPI:
    repo = Repository(engine, resource)
    idempotency = Idempotency(engine, service=service, redis_url=redis_url, purge_every=purge_every)
    create_once = idempotency.route(policy)
    update_once = idempotency.route(update_policy or policy)
    api = APIRouter()

    async def misbehave(request: Request, amount: int) -> Response | None:
        if amount == 400:
            raise Problem(400, "The amount 400 is refused.")
        if amount == 500:
            raise RuntimeError("the payment provider fell over")
        if amount == 503:
            return JSONBytes({"detail": "try later"}, status_code=503)
        if amount == 999 and os.environ.get("PAYMENTS_HANG") == "1":
            print("hanging", flush=True)
            await asyncio.Event().wait()
        return None

    @api.post("/payments", status_code=201)
    async def create_payment(
        body: PaymentIn, request: Request, principal: Annotated[Principal, Depends(caller_of)]
    ) -> Response:

        async def create() -> Response:
            if body.amount == 777:  # a slow call (a payment provider) before the write
                await request.app.state.gate.wait()
            item = await repo.create(body.model_dump())
            failure = await misbehave(request, body.amount)
            if failure is not None:
                return failure
            url = f"/payments/{item['id']}"
            return JSONBytes(item, status_code=201, headers={"Location": url})

        return await create_once.run(request, principal, create)

    @api.patch("/payments/{id}")
    async def change_payment(
        id: uuid.UUID,
        body: PaymentChange,
        request: Request,
        principal: Annotated[Principal, Depends(caller_of)],
    ) -> Response:

        async def change() -> Response:
            item = await repo.update(id, body.model_dump())
            if item is None:
                raise Problem(404, f"No payment {id}.")
            failure = await misbehave(request, body.amount)
            return failure if failure is not None else JSONBytes(item)

        return await update_once.run(request, principal, change)

    app = create_service_app(
        title="payments",
        version="1",
        description="",
        engine=engine,
        routers=[api],
        idempotency=idempotency,
    )
    app.state.gate = asyncio.Event()
    app.state.repo = repo
    return app


async def count_payments(engine: AsyncEngine, **where: Any) -> int:
    statement = sa.select(sa.func.count()).select_from(payments)
    for name, value in where.items():
        statement = statement.where(payments.c[name] == value)
    async with engine.connect() as conn:
        return int((await conn.execute(statement)).scalar_one())
