"""Signing keys and tokens for the test suites of generated services.

The tests of a service that is not the identity service cannot log in anywhere, so they
sign their own tokens with a throwaway key and point the service at its JWKS file.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path

from .keys import KeyStore
from .tokens import TokenIssuer


class TestTokens:
    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, issuer: str, audience: str) -> None:
        self.keys = KeyStore.ensure(directory / "keys")
        self.issuer = TokenIssuer(self.keys, issuer, audience, access_ttl=3600)
        self.jwks_file = directory / "jwks.json"
        self.jwks_file.write_text(json.dumps(self.keys.jwks()), encoding="utf-8")

    def token(
        self,
        subject: uuid.UUID | str,
        roles: Iterable[str] = (),
        *,
        tenant: str | None = None,
        kind: str = "user",
    ) -> str:
        token, _ = self.issuer.issue(
            str(subject), "client" if kind == "client" else "user", roles, tenant
        )
        return token

    def headers(
        self, subject: uuid.UUID | str, roles: Iterable[str] = (), *, tenant: str | None = None
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(subject, roles, tenant=tenant)}"}
