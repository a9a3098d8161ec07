"""One database transaction shared by every repository call of a request.

An idempotent request must commit its stored response together with the change it made.
Rather than thread a connection through routes, hooks and repositories, the transaction
is ambient: :func:`atomic` opens it for the running task, and repository calls on the same
database join it through :func:`begin` and :func:`connect`. Work that may only happen once
the change is durable (storing rows in a shared cache, invalidating it) is queued with
:func:`after_commit` and skipped on rollback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Action = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class Transaction:
    engine: AsyncEngine
    conn: AsyncConnection
    committed: list[Action] = field(default_factory=list)  # run after COMMIT, in order


_current: ContextVar[Transaction | None] = ContextVar("microforge_transaction", default=None)


def joined(engine: AsyncEngine) -> Transaction | None:
    """The ambient transaction if it runs on ``engine``'s database, else None.

    Engines made with ``execution_options`` share their pool with the original; the pool
    identifies the database.
    """
    transaction = _current.get()
    if transaction is None or transaction.engine.sync_engine.pool is not engine.sync_engine.pool:
        return None
    return transaction


@asynccontextmanager
async def begin(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction: the ambient one, or a new one committed on exit."""
    transaction = joined(engine)
    if transaction is not None:
        yield transaction.conn
        return
    async with engine.begin() as conn:
        yield conn


@asynccontextmanager
async def connect(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads: the ambient transaction's (which sees its own uncommitted
    writes, and needs no second pooled connection), or a new one."""
    transaction = joined(engine)
    if transaction is not None:
        yield transaction.conn
        return
    async with engine.connect() as conn:
        yield conn


async def after_commit(engine: AsyncEngine, action: Action) -> None:
    """Run ``action`` once the ambient transaction commits, or now if there is none."""
    transaction = joined(engine)
    if transaction is None:
        await action()
    else:
        transaction.committed.append(action)


@asynccontextmanager
async def atomic(
    engine: AsyncEngine, conn: AsyncConnection | None = None
) -> AsyncIterator[Transaction]:
    """Make repository calls on ``engine`` in this task share one transaction.

    Commits when the block ends, rolls back if it raises; the after-commit actions run
    after the COMMIT succeeded. ``conn`` (outside a transaction) is used instead of a
    pooled connection of its own.
    """
    if _current.get() is not None:
        raise RuntimeError("atomic() blocks do not nest")
    if conn is None:
        async with engine.connect() as own, atomic(engine, own) as transaction:
            yield transaction
        return
    async with conn.begin():
        transaction = Transaction(engine, conn)
        token = _current.set(transaction)
        try:
            yield transaction
        finally:
            _current.reset(token)
    for action in transaction.committed:
        await action()
