"""The request -> Principal step: read the bearer token and verify it.

Routes take `caller: Caller`; that also declares the HTTP bearer scheme in OpenAPI so
the docs page offers an "Authorize" button.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from ..problems import Problem
from .principal import ANONYMOUS, Principal
from .tokens import InvalidToken, KeysUnavailable, TokenVerifier

UNAUTHORIZED_DETAIL = "The access token is missing, malformed, expired or not valid here."
CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None for any other form."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


async def authenticate(request: HTTPConnection) -> Principal:
    """Who is calling: ANONYMOUS without an Authorization header, else the token's owner.

    A malformed header or a token that does not verify is a 401 problem; the detail is
    the same for every reason, so it teaches an attacker nothing.
    """
    authorization = request.headers.get("authorization")
    if authorization is None:
        return ANONYMOUS
    token = bearer_token(authorization)
    if token is None:
        raise Problem(401, UNAUTHORIZED_DETAIL, headers=CHALLENGE)
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise RuntimeError("app.state.token_verifier is not set: this service cannot verify")
    try:
        return await verifier.verify(token)
    except KeysUnavailable:
        # The identity service is unreachable and we never got its keys: the token may
        # well be good, so do not tell the client to throw it away.
        raise Problem(
            503,
            "Access tokens cannot be verified right now; try again shortly.",
            headers={"Retry-After": "10"},
        ) from None
    except InvalidToken:
        raise Problem(401, UNAUTHORIZED_DETAIL, headers=CHALLENGE) from None


class _BearerAuthentication(SecurityBase):
    """`authenticate` as a FastAPI security dependency.

    Being a SecurityBase puts the bearer scheme into OpenAPI; doing the work in one
    dependency (rather than HTTPBearer plus ours) keeps the per-request cost minimal.
    """

    def __init__(self) -> None:
        self.model = HTTPBearerModel(
            bearerFormat="JWT",
            description="An access token from the identity service (POST /auth/login).",
        )
        self.scheme_name = "bearer"

    async def __call__(self, request: HTTPConnection) -> Principal:
        caller = await authenticate(request)
        request.state.caller = caller  # for hooks and custom routes
        return caller


bearer_authentication = _BearerAuthentication()

Caller = Annotated[Principal, Depends(bearer_authentication)]
"""The caller of a route: `async def handler(caller: Caller) -> ...`."""
