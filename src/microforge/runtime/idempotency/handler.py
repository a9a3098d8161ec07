"""Idempotency-Key on POST and PATCH, as the IETF draft and Stripe describe it.

A request with a key claims it first (see store.py), then:

- a new key: the request runs in one database transaction; a successful response is
  stored in that same transaction and the change commits with it. An error response
  rolls the change back and is stored (client errors, by default) or frees the key
  (server errors, by default), so a retry can run again;
- a key whose request finished: its stored response is sent again, with
  ``Idempotent-Replayed: true``;
- a key whose request is still running: the duplicate waits up to the policy's ``wait``
  for it to finish, then gets its response, or a 409 with Retry-After;
- a key used before with another method, path or body: 422.

Every response to a keyed request states when the key expires (Idempotency-Key-Expires).
Keys are scoped to the caller (principal and tenant): one client can neither replay nor
block another's keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import format_datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from ..auth.principal import Principal
from ..problems import Problem
from ..transaction import atomic
from .key import InvalidIdempotencyKey, fingerprint, parse_idempotency_key
from .policy import IdempotencyPolicy
from .store import MAX_SCOPE_LENGTH, Claim, IdempotencyStore, SqlIdempotencyStore, StoredResponse

log = logging.getLogger("microforge.idempotency")

Operation = Callable[[], Awaitable[Response]]
REPLAYED = "Idempotent-Replayed"
EXPIRES = "Idempotency-Key-Expires"
_PROBLEM_TYPE = "urn:microforge:problem:idempotency-key-"  # + what went wrong
# Headers a replay must not repeat: they describe the original connection or set state.
_NOT_STORED = frozenset({b"content-length", b"date", b"server", b"set-cookie"})
_FIRST_POLL = 0.005  # seconds; waiting duplicates poll the store, backing off to _LAST_POLL
_LAST_POLL = 0.1


class Idempotency:
    """The Idempotency-Key handling of one service: its stores and waiting duplicates."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        service: str = "",
        redis_url: str | None = None,
        purge_every: float = 300.0,
    ) -> None:
        self.engine = engine
        self.service = service
        self.database: IdempotencyStore = SqlIdempotencyStore(engine)
        self._redis_url = redis_url
        self._redis: IdempotencyStore | None = None
        self._purge_every = purge_every
        self._purger: asyncio.Task[None] | None = None
        # Requests running here, by (store, scope, key): local duplicates wake when they end.
        self._running: dict[tuple[int, str, str], asyncio.Event] = {}

    def store(self, kind: str) -> IdempotencyStore:
        if kind == "database":
            return self.database
        if self._redis is None:
            if not self._redis_url:
                raise RuntimeError("the spec keeps idempotency keys in Redis: set REDIS_URL")
            from .redis_store import RedisIdempotencyStore

            self._redis = RedisIdempotencyStore(self._redis_url, self.service)
        return self._redis

    def route(self, policy: IdempotencyPolicy) -> IdempotentRoute:
        """What a POST or PATCH route runs its work through."""
        return IdempotentRoute(self, policy)

    async def start(self) -> None:
        if self._purger is None:
            self._purger = asyncio.create_task(self._purge_forever())

    async def _purge_forever(self) -> None:
        while True:
            await asyncio.sleep(self._purge_every)
            # Only the database needs it: Redis drops each key at its expiry itself.
            try:
                removed = await self.database.purge()
            except Exception:  # the database may be restarting; the next round retries
                log.exception("purging expired idempotency keys failed")
            else:
                if removed:
                    log.info("purged %d expired idempotency keys", removed)

    async def aclose(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        if self._redis is not None:
            await self._redis.aclose()


class IdempotentRoute:
    def __init__(self, idempotency: Idempotency, policy: IdempotencyPolicy) -> None:
        self.idempotency = idempotency
        self.policy = policy

    async def run(self, request: Request, caller: Principal, operation: Operation) -> Response:
        """``operation``'s response, made at most once per Idempotency-Key."""
        header = request.headers.get("idempotency-key")
        if header is None or self.policy.mode == "off":
            if self.policy.mode == "required":
                raise _missing_key(request)
            return await operation()
        try:
            key = parse_idempotency_key(header)
        except InvalidIdempotencyKey as exc:
            raise Problem(
                400, str(exc), title="Malformed Idempotency-Key", type=_PROBLEM_TYPE + "malformed"
            ) from None
        body = await request.body()
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        headers = request.headers
        request_print = fingerprint(
            request.method,
            target,
            body,
            headers.get("content-type", ""),
            headers.get("if-match", ""),
        )
        store = self.idempotency.store(self.policy.store)
        scope = scope_of(caller)
        if store.transactional:
            # A new key, the common case, claims and runs on one pooled connection.
            async with self.idempotency.engine.connect() as conn:
                claim = await self._try(store, scope, key, request_print, conn)
                if claim.state == "acquired":
                    held = _Held(store, scope, key, claim)
                    return await self._execute(request, held, operation, conn)
        else:
            claim = await self._try(store, scope, key, request_print)
        claim = await self._settle(store, scope, key, request_print, claim)
        if claim.state == "done":
            assert claim.response is not None
            return _replay(claim.response)
        return await self._execute(request, _Held(store, scope, key, claim), operation)

    async def _try(
        self,
        store: IdempotencyStore,
        scope: str,
        key: str,
        print_: str,
        conn: AsyncConnection | None = None,
    ) -> Claim:
        """One claim of the key; 422 if it was made by a different request."""
        policy = self.policy
        claim = await store.claim(
            scope, key, print_, lease=policy.lease, retention=policy.retention, conn=conn
        )
        if claim.fingerprint != print_:
            raise Problem(
                422,
                "This Idempotency-Key was already used for a different request (another "
                "method, path or body). Send a new key for a new operation; to retry, "
                "resend exactly the same request.",
                title="Idempotency-Key reused",
                type=_PROBLEM_TYPE + "reused",
            )
        return claim

    async def _settle(
        self, store: IdempotencyStore, scope: str, key: str, print_: str, claim: Claim
    ) -> Claim:
        """While another request runs the key, wait for it (holding no connection); then
        its finished claim, or the key itself once its lease ended. 409 after ``wait``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.wait
        poll = _FIRST_POLL
        local = (id(store), scope, key)
        while claim.state == "running":
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Problem(
                    409,
                    "A request with this Idempotency-Key is still being processed. Retry "
                    "after the Retry-After delay to receive its response.",
                    title="Request in progress",
                    type=_PROBLEM_TYPE + "in-progress",
                    headers={"Retry-After": "1"},
                )
            # Woken at once when the request runs in this process; other processes' are
            # seen by polling the store.
            finished = self.idempotency._running.get(local)
            with contextlib.suppress(TimeoutError):
                if finished is not None:
                    async with asyncio.timeout(remaining):
                        await finished.wait()
                else:
                    await asyncio.sleep(min(poll, remaining))
            poll = min(poll * 2, _LAST_POLL)
            claim = await self._try(store, scope, key, print_)
        return claim

    async def _execute(
        self,
        request: Request,
        held: _Held,
        operation: Operation,
        conn: AsyncConnection | None = None,
    ) -> Response:
        local = (id(held.store), held.scope, held.key)
        running = self.idempotency._running
        running[local] = finished = asyncio.Event()
        try:
            if held.store.transactional:
                return await self._in_transaction(request, held, operation, conn)
            response = await _respond(request, operation)
            response.headers[EXPIRES] = held.expires
            if not self.policy.stores(response.status_code):
                await held.release()
            elif not await held.complete(response):
                log.warning("idempotency key %r was taken over before it completed", held.key)
            return response
        except BaseException:
            # Crashed or cancelled here: free the key for a retry (the change rolled back).
            with contextlib.suppress(Exception):
                await asyncio.shield(held.release())
            raise
        finally:
            finished.set()
            if running.get(local) is finished:
                del running[local]

    async def _in_transaction(
        self, request: Request, held: _Held, operation: Operation, conn: AsyncConnection | None
    ) -> Response:
        try:
            async with atomic(self.idempotency.engine, conn) as transaction:
                response = await _respond(request, operation)
                response.headers[EXPIRES] = held.expires
                if response.status_code >= 400:
                    raise _RollBack(response)
                if not await held.complete(response, transaction.conn):
                    raise _LeaseLost
            return response
        except _RollBack as failed:
            # An error leaves no change behind; its response is kept or the key freed.
            response = failed.response
            if self.policy.stores(response.status_code):
                await held.complete(response)
            else:
                await held.release()
            return response
        except _LeaseLost:
            # The lease ran out and a retry took the key over: this request's change was
            # rolled back, the retry's stands. Its response is what the client wants.
            raise Problem(
                409,
                "This request took longer than its Idempotency-Key lease and a retry took "
                "it over; nothing was changed by this attempt. Retry to receive the result.",
                title="Request in progress",
                type=_PROBLEM_TYPE + "in-progress",
                headers={"Retry-After": "1"},
            ) from None


@dataclass(frozen=True, slots=True)
class _Held:
    """A key this request holds: in which store, for whom, with which fencing token."""

    store: IdempotencyStore
    scope: str
    key: str
    claim: Claim

    @property
    def expires(self) -> str:
        """The Idempotency-Key-Expires header: when the key and its response go."""
        return format_datetime(self.claim.expires_at.astimezone(dt.UTC), usegmt=True)

    async def complete(self, response: Response, conn: AsyncConnection | None = None) -> bool:
        token = self.claim.token
        return await self.store.complete(self.scope, self.key, token, _stored(response), conn)

    async def release(self) -> None:
        await self.store.release(self.scope, self.key, self.claim.token)


class _RollBack(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class _LeaseLost(Exception):
    pass


def scope_of(caller: Principal) -> str:
    """The key space of a caller: its principal, and its tenant when there is one."""
    scope = f"{caller.kind}:{caller.subject}"
    if caller.tenant is not None:
        scope += f"@{caller.tenant}"
    if len(scope) > MAX_SCOPE_LENGTH:
        scope = "sha256:" + hashlib.sha256(scope.encode()).hexdigest()
    return scope


async def _respond(request: Request, operation: Operation) -> Response:
    """``operation``'s response; an exception becomes the response the app's exception
    handlers would send, so errors can be stored like any other response."""
    try:
        return await operation()
    except Exception as exc:
        handler = _handler_for(request, exc)
        if handler is None:
            raise
        return await handler(request, exc)


def _handler_for(request: Request, exc: Exception) -> Callable[..., Awaitable[Response]] | None:
    handlers = getattr(request.app, "exception_handlers", {})
    for kind in type(exc).__mro__:
        if kind in handlers:
            handler: Callable[..., Awaitable[Response]] = handlers[kind]
            return handler
    return None


def _stored(response: Response) -> StoredResponse:
    body = getattr(response, "body", None)
    if not isinstance(body, bytes):
        raise TypeError("an idempotent route must return a Response with a body")
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in response.raw_headers
        if name.lower() not in _NOT_STORED
    ]
    return StoredResponse(response.status_code, headers, body)


def _replay(stored: StoredResponse) -> Response:
    response = Response(stored.body, status_code=stored.status)
    response.raw_headers.extend(
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in stored.headers
    )
    response.headers[REPLAYED] = "true"
    return response


def key_parameter(policy: IdempotencyPolicy) -> dict[str, object]:
    """The Idempotency-Key header as an OpenAPI parameter of a route."""
    hours = policy.retention / 3600
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": policy.mode == "required",
        "description": (
            'A unique value per operation, e.g. "<a new UUID>" (quoted: a structured-field '
            "string). A retry with the same key and body gets the first response again "
            f"(Idempotent-Replayed: true); keys are kept {hours:g} hours."
        ),
        "schema": {"type": "string", "maxLength": 257},
    }


def _missing_key(request: Request) -> Problem:
    return Problem(
        400,
        f"{request.method} {request.url.path} requires an Idempotency-Key header: send a "
        'new unique value per operation, e.g. Idempotency-Key: "<a new UUID>", and the '
        "same value when you retry it.",
        title="Idempotency-Key required",
        type=_PROBLEM_TYPE + "missing",
    )
