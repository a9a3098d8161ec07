"""RFC 9457 problem details for every error a service returns.

Handlers are installed for validation errors, HTTP errors, database integrity and data
errors, and anything unexpected, so a client never sees an HTML page or a bare 500 trace.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from .jsonio import dumps

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("microforge.problems")


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem+json body."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = type
        self.headers = headers
        self.extra = extra


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type: str = "about:blank",
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": type,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return Response(dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        field = ".".join(loc[1:]) if loc and loc[0] in {"body", "query", "path", "header"} else ""
        errors.append(
            {
                "field": field or ".".join(loc),
                "location": loc[0] if loc else "body",
                "message": error.get("msg", "invalid value"),
                "type": error.get("type", "value_error"),
            }
        )
    return errors


def integrity_problem(exc: IntegrityError) -> Problem:
    """Tell a unique conflict from a broken or still-used reference, across drivers."""
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    code = str(getattr(exc.orig, "sqlstate", "") or "")
    args = getattr(exc.orig, "args", ())
    errno = args[0] if args and isinstance(args[0], int) else None
    if code == "23505" or errno == 1062 or "unique" in text or "duplicate" in text:
        return Problem(
            409,
            "Another row already has this value; unique fields must be distinct.",
            title="Unique constraint violated",
            type="urn:microforge:problem:unique-violation",
        )
    if code == "23503" or errno in {1451, 1452} or "foreign key" in text:
        # SQLite only says "FOREIGN KEY constraint failed", for both sides: a failing
        # DELETE means the row is still used (it was reported as a missing reference).
        deleting = (exc.statement or "").lstrip().upper().startswith("DELETE")
        still_used = errno == 1451 or "still referenced" in text or "delete" in text or deleting
        detail = (
            "The row is still referenced by other rows; remove or change them first."
            if still_used
            else "A referenced row does not exist; check the *_id fields."
        )
        return Problem(
            409, detail, title="Reference conflict", type="urn:microforge:problem:reference"
        )
    if code == "23502" or errno == 1048 or "not null" in text:
        return Problem(422, "A required field is missing or null.", title="Missing value")
    return Problem(409, "The change conflicts with existing data.", title="Conflict")


# MySQL/MariaDB error numbers for a value its column cannot hold. asyncmy raises some of
# them as OperationalError (1292 for a UUID MariaDB's UUID type refuses, 4025 for the
# json_valid CHECK of a JSON column), not DataError.
_MYSQL_VALUE_ERRORS = frozenset({1264, 1265, 1292, 1366, 1367, 1406, 1411, 3140, 4025})


def is_unstorable_value(exc: DBAPIError) -> bool:
    """Whether the database refused a value (too long, out of range, bad encoding...).

    The asyncpg adapter wraps PostgreSQL's data exceptions in a plain DBAPIError, not
    DataError, so a string too long for its column answered 500: SQLSTATE class 22
    ("data exception") is what they share.
    """
    if isinstance(exc, DataError):
        return True
    if str(getattr(exc.orig, "sqlstate", "") or "").startswith("22"):
        return True
    args: tuple[Any, ...] = getattr(exc.orig, "args", ())
    return bool(args) and isinstance(args[0], int) and args[0] in _MYSQL_VALUE_ERRORS


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(
            exc.status,
            exc.detail,
            title=exc.title,
            type=exc.type,
            instance=request.url.path,
            headers=exc.headers,
            **exc.extra,
        )

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(
                400,
                "The request body is not valid JSON.",
                title="Malformed request body",
                instance=request.url.path,
            )
        names = ", ".join(sorted({e["field"] for e in errors if e["field"]}))
        return problem_response(
            422,
            f"Invalid value for: {names}." if names else "The request is invalid.",
            title="Validation failed",
            type="urn:microforge:problem:validation",
            instance=request.url.path,
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(
            exc.status_code,
            str(exc.detail) if exc.detail else HTTPStatus(exc.status_code).phrase,
            instance=request.url.path,
            headers=dict(exc.headers) if exc.headers else None,
        )

    async def on_integrity(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IntegrityError)
        return await on_problem(request, integrity_problem(exc))

    async def on_data(request: Request, exc: Exception) -> Response:
        return problem_response(
            422,
            "A value cannot be stored by the database (out of range or invalid characters).",
            title="Unstorable value",
            instance=request.url.path,
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500, "The server failed to handle the request.", instance=request.url.path
        )

    async def on_database(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DBAPIError)
        if is_unstorable_value(exc):
            return await on_data(request, exc)
        return await on_unexpected(request, exc)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(IntegrityError, on_integrity)
    app.add_exception_handler(DataError, on_data)
    app.add_exception_handler(DBAPIError, on_database)
    app.add_exception_handler(Exception, on_unexpected)
