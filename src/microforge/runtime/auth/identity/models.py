"""Request and response bodies of the identity endpoints (the OpenAPI documentation).

Responses are written with orjson straight from dicts; these models describe them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..passwords import MAX_PASSWORD_LENGTH

_Password = Field(max_length=MAX_PASSWORD_LENGTH, json_schema_extra={"format": "password"})
_Secret = Field(min_length=1, max_length=512, json_schema_extra={"format": "password"})
_Strict = ConfigDict(extra="forbid")


class LoginRequest(BaseModel):
    model_config = _Strict

    email: str = Field(min_length=1, max_length=320)
    password: str = _Password


class RefreshRequest(BaseModel):
    model_config = _Strict

    refresh_token: str = _Secret


class PasswordChange(BaseModel):
    model_config = _Strict

    current_password: str = _Password
    new_password: str = _Password


class TokenPair(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds the access token stays valid.")
    refresh_token: str = Field(description="Single use: /auth/refresh returns a new one.")
    refresh_expires_in: int = Field(description="Seconds the refresh token stays valid.")


class SignupResult(TokenPair):
    user: dict[str, Any] = Field(description="The new user, as the user entity reads it.")


class ClientToken(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


class ClientCredentials(BaseModel):
    """The body of POST /auth/token, form-encoded (OAuth 2.0) or JSON."""

    grant_type: Literal["client_credentials"]
    client_secret: str = Field(description="The API key (mf_<prefix>_<secret>).")


class Me(BaseModel):
    id: str
    kind: Literal["user", "client"]
    roles: list[str]
    tenant: str | None
    user: dict[str, Any] | None = Field(description="The user's row; null for API keys.")


class ApiKeyCreate(BaseModel):
    model_config = _Strict

    name: str = Field(min_length=1, max_length=100)
    roles: list[str] = Field(max_length=100)
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class ApiKey(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    roles: list[str]
    tenant: str | None
    created_by: uuid.UUID | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The API key. It is shown only in this response: store it.")


class ApiKeyList(BaseModel):
    items: list[ApiKey]
    total: int


class RolesUpdate(BaseModel):
    model_config = _Strict

    roles: list[str] = Field(max_length=100)


class DisabledUpdate(BaseModel):
    model_config = _Strict

    disabled: bool


class UserAccess(BaseModel):
    id: uuid.UUID
    roles: list[str]
    tenant: str | None
    disabled: bool
