"""The other services of a project, called with this service's own credentials.

Each service holds its own API key (`microforge up` provisions one per service with the
spec's `client_roles`), trades it for short-lived access tokens and calls the others like
any client: they verify the token and apply their access rules. No secret is shared
between services, so a breached service can do what its own key allows and no more.

    inventory = request.app.state.peers.client("inventory")
    stock = await inventory.get("/stock-items", params={"product_id": str(product_id)})
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from .service_client import ServiceTokenSource, service_client


class PeerError(RuntimeError):
    """A peer cannot be called as configured; the message says what to set."""


class Peers:
    def __init__(
        self, urls: Mapping[str, str], token_url: str, api_key: str, env_prefix: str = ""
    ) -> None:
        self.urls = dict(urls)
        self._prefix = env_prefix
        self._tokens = ServiceTokenSource(token_url, api_key) if token_url and api_key else None
        self._clients: dict[str, httpx.AsyncClient] = {}

    def client(self, name: str) -> httpx.AsyncClient:
        """An httpx client for the peer service `name`, sending this service's token."""
        if name not in self.urls:
            known = ", ".join(sorted(self.urls)) or "none"
            raise PeerError(
                f"no URL for the service '{name}' (known: {known}); set {self._prefix}PEER_URLS"
            )
        if self._tokens is None:
            raise PeerError(
                f"this service has no credentials; set {self._prefix}AUTH_API_KEY and "
                f"{self._prefix}AUTH_TOKEN_URL (microforge up does this for you)"
            )
        if name not in self._clients:
            self._clients[name] = service_client(self.urls[name], self._tokens)
        return self._clients[name]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        if self._tokens is not None:
            await self._tokens.aclose()
