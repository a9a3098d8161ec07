"""The identity service's HTTP endpoints: /auth/* and /.well-known/jwks.json.

This module deliberately has no ``from __future__ import annotations``: the signup body
is a model built at run time from the user entity's create schema, and FastAPI reads
route annotations when the routes are defined.
"""

import types
from typing import Any, cast
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from ...jsonio import JSONBytes
from ...problems import Problem
from ...repository import Repository
from ..authenticate import Caller
from ..keys import KeyStore
from ..passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from ..principal import Principal
from ..tokens import TokenIssuer
from .config import IdentityConfig
from .models import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ClientCredentials,
    ClientToken,
    DisabledUpdate,
    LoginRequest,
    Me,
    PasswordChange,
    RefreshRequest,
    RolesUpdate,
    SignupResult,
    TokenPair,
    UserAccess,
)
from .service import BEARER, IdentityService
from .tables import IdentityTables
from .throttle import client_address

# RFC 6749 §5.1: responses carrying tokens must not be stored by caches.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
JWKS_CACHE = {"Cache-Control": "public, max-age=300"}
_MAX_TOKEN_REQUEST = 8 * 1024
_EXAMPLE_PASSWORD = "correct horse battery staple"

_TOKEN_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {"schema": ClientCredentials.model_json_schema()},
        "application/json": {"schema": ClientCredentials.model_json_schema()},
    },
}


def identity_router(
    config: IdentityConfig,
    tables: IdentityTables,
    engine: AsyncEngine,
    issuer: TokenIssuer,
    keys: KeyStore,
    users_repo: Repository,
) -> APIRouter:
    """Every identity endpoint of the auth contract, on one router (no prefix).

    Routes needing a caller read ``request.app.state.token_verifier`` (see
    ``authenticate``), which the identity service builds over its own keys.
    """
    service = IdentityService(config, tables, engine, issuer, users_repo)
    router = APIRouter(tags=["auth"])

    if config.signup:
        _signup_route(router, service, config)

    @router.post(
        "/auth/login",
        response_model=TokenPair,
        summary="Log in with e-mail and password",
        responses={401: {}, 429: {}},
    )
    async def login(body: LoginRequest, request: Request) -> Response:
        address = client_address(
            request.client.host if request.client else None,
            request.headers.get("x-forwarded-for"),
            config.trusted_proxy_hops,
        )
        pair = await service.login(body.email, body.password, address)
        return JSONBytes(pair, headers=NO_STORE)

    @router.post(
        "/auth/refresh",
        response_model=TokenPair,
        summary="Trade a refresh token for a new pair (the old one is spent)",
        responses={401: {}},
    )
    async def refresh(body: RefreshRequest) -> Response:
        return JSONBytes(await service.refresh(body.refresh_token), headers=NO_STORE)

    @router.post("/auth/logout", status_code=204, summary="End the session of a refresh token")
    async def logout(body: RefreshRequest) -> Response:
        await service.logout(body.refresh_token)
        return Response(status_code=204)

    @router.get("/auth/me", response_model=Me, summary="Who the access token speaks for")
    async def me(caller: Caller) -> Response:
        _require_caller(caller)
        return JSONBytes(await service.me(caller))

    @router.post(
        "/auth/password",
        status_code=204,
        summary="Change the password (ends every session)",
        responses={403: {}, 422: {}, 429: {}},
    )
    async def change_password(body: PasswordChange, caller: Caller) -> Response:
        _require_caller(caller)
        await service.change_password(caller, body.current_password, body.new_password)
        return Response(status_code=204)

    @router.post(
        "/auth/token",
        response_model=ClientToken,
        summary="OAuth 2.0 client credentials: an access token for an API key",
        openapi_extra={"requestBody": _TOKEN_REQUEST_BODY},
        responses={400: {}, 401: {}, 415: {}},
    )
    async def token(request: Request) -> Response:
        fields = await _token_request(request)
        if fields.get("grant_type") != "client_credentials":
            raise Problem(
                400,
                "Only grant_type=client_credentials is supported here.",
                error="unsupported_grant_type",
            )
        secret = fields.get("client_secret")
        if not secret:
            raise Problem(400, "client_secret (the API key) is required.", error="invalid_request")
        return JSONBytes(await service.client_token(secret), headers=NO_STORE)

    @router.post(
        "/auth/api-keys",
        status_code=201,
        response_model=ApiKeyCreated,
        summary="Create an API key (shown once)",
        responses={401: {}, 403: {}},
    )
    async def create_api_key(body: ApiKeyCreate, caller: Caller) -> Response:
        created = await service.create_api_key(caller, body.name, body.roles, body.expires_in_days)
        return JSONBytes(created, status_code=201, headers=NO_STORE)

    @router.get("/auth/api-keys", response_model=ApiKeyList, summary="List API keys")
    async def list_api_keys(caller: Caller) -> Response:
        return JSONBytes(await service.list_api_keys(caller))

    @router.delete("/auth/api-keys/{key_id}", status_code=204, summary="Revoke an API key")
    async def revoke_api_key(key_id: str, caller: Caller) -> Response:
        await service.revoke_api_key(caller, key_id)
        return Response(status_code=204)

    @router.put(
        "/auth/users/{user_id}/roles", response_model=UserAccess, summary="Set a user's roles"
    )
    async def set_roles(user_id: str, body: RolesUpdate, caller: Caller) -> Response:
        return JSONBytes(await service.set_roles(caller, user_id, body.roles))

    @router.put(
        "/auth/users/{user_id}/disabled",
        response_model=UserAccess,
        summary="Disable or enable a user (disabling ends their sessions)",
    )
    async def set_disabled(user_id: str, body: DisabledUpdate, caller: Caller) -> Response:
        return JSONBytes(await service.set_disabled(caller, user_id, body.disabled))

    @router.get(
        "/.well-known/jwks.json",
        summary="The public keys that verify access tokens",
        tags=["auth"],
    )
    async def jwks() -> Response:
        return JSONBytes(keys.jwks(), headers=JWKS_CACHE)

    return router


def _require_caller(caller: Principal) -> None:
    if not caller.authenticated:
        raise Problem(401, "Authentication required: send an access token.", headers=BEARER)


def signup_model(config: IdentityConfig) -> type[BaseModel]:
    """The user entity's create schema plus ``password``; unknown fields are refused, so
    a client cannot slip in ``roles``, ``tenant_id`` or the like."""
    base = config.user_create_model
    settings: dict[str, Any] = {**base.model_config, "extra": "forbid"}
    extra = settings.get("json_schema_extra")
    if isinstance(extra, dict) and isinstance(extra.get("examples"), list):
        # The documented examples of the entity, made complete for signup.
        examples = [
            {**example, "password": _EXAMPLE_PASSWORD}
            for example in extra["examples"]
            if isinstance(example, dict)
        ]
        settings["json_schema_extra"] = {**extra, "examples": examples}
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__doc__": f"A new account: the {config.user_entity} fields and a password.",
        "__annotations__": {"password": str},
        # Lengths are checked by the password policy, which names the field in a 422.
        "password": Field(
            description=f"{MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters.",
            json_schema_extra={"format": "password"},
        ),
        "model_config": ConfigDict(**settings),  # type: ignore[typeddict-item]
    }
    model = types.new_class("SignupRequest", (base,), {}, lambda ns: ns.update(namespace))
    return cast(type[BaseModel], model)


def _signup_route(router: APIRouter, service: IdentityService, config: IdentityConfig) -> None:
    refused = config.signup_forbidden_fields

    async def signup(body: BaseModel) -> Response:
        if sent := sorted(body.model_fields_set & refused):
            # The same rule as the user entity's field access: named, 403.
            raise Problem(403, f"A new account cannot set '{sent[0]}'.", field=sent[0])
        data = body.model_dump()
        password: str = data.pop("password")
        result = await service.signup(data, password)
        return JSONBytes(result, status_code=201, headers=NO_STORE)

    # The body model exists only at run time; FastAPI reads it from the annotation.
    signup.__annotations__["body"] = signup_model(config)
    router.post(
        "/auth/signup",
        status_code=201,
        response_model=SignupResult,
        summary="Create an account and log in",
        responses={409: {}, 422: {}},
    )(signup)


async def _token_request(request: Request) -> dict[str, str]:
    """The fields of a token request, form-encoded (as OAuth 2.0 says) or JSON."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    body = await request.body()
    if len(body) > _MAX_TOKEN_REQUEST:
        raise Problem(413, "The token request is too large.", error="invalid_request")
    malformed = Problem(400, "The token request body is malformed.", error="invalid_request")
    if media == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise malformed from None
        names = [name for name, _ in pairs]
        if len(names) != len(set(names)):  # RFC 6749 §3.2: no repeated parameters
            raise malformed
        return dict(pairs)
    if media == "application/json" or media.endswith("+json"):
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise malformed from None
        if not isinstance(document, dict):
            raise malformed
        return {k: v for k, v in document.items() if isinstance(v, str)}
    raise Problem(
        415,
        "Send the token request as application/x-www-form-urlencoded or application/json.",
        error="invalid_request",
    )
