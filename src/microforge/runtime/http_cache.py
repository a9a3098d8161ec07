"""HTTP caching of GET responses: ETag, Cache-Control and 304 Not Modified.

A response is marked ``public`` (storable by shared caches such as a CDN) only when the
caller sent no credentials and the entity's read rule is public; anything a token
unlocked is ``private``. ``Vary: Authorization`` keeps shared caches from mixing them.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from .auth.policy import EntityPolicy
from .cache.config import CacheConfig
from .jsonio import Payload

_VARY = "Authorization"


@dataclass(frozen=True, slots=True)
class HttpCaching:
    max_age: int = 0
    stale_while_revalidate: int = 0
    public: bool = False  # anonymous callers may read: their responses may be shared

    @classmethod
    def of(cls, config: CacheConfig | None, policy: EntityPolicy, action: str) -> HttpCaching:
        """The HTTP caching of an entity's GET one (`read`) or list (`list`) responses:
        the spec's `cache.http`, public where the action's rule is."""
        public = policy.rule(action).kind == "public"
        if config is None:
            return cls(public=public)
        return cls(config.max_age, config.stale_while_revalidate, public)

    def cache_control(self, request: Request) -> str:
        shared = self.public and "authorization" not in request.headers
        freshness = f"max-age={self.max_age}" if self.max_age else "no-cache"
        value = f"{'public' if shared else 'private'}, {freshness}"
        if self.stale_while_revalidate:
            value += f", stale-while-revalidate={self.stale_while_revalidate}"
        return value

    def respond(self, request: Request, payload: Payload) -> Response:
        """The payload as a 200, or a bodyless 304 if the client holds this version."""
        etag = payload.etag
        headers = {"ETag": etag, "Cache-Control": self.cache_control(request), "Vary": _VARY}
        condition = request.headers.get("if-none-match")
        if condition is not None and etag_matches(condition, etag):
            return Response(status_code=304, headers=headers)
        return Response(payload.body, media_type="application/json", headers=headers)


def tagged(
    payload: Payload, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A written row with its new ETag: what the next If-Match sends (POST and PATCH)."""
    return Response(
        payload.body,
        status_code,
        {**(headers or {}), "ETag": payload.etag},
        media_type="application/json",
    )


def etag_matches(condition: str, etag: str) -> bool:
    """RFC 9110 If-None-Match: weak comparison against a list of tags, or ``*``."""
    if condition.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in condition.split(","))
