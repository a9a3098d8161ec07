"""Building a service's token verifier and signing keys from its settings.

Misconfiguration is reported as AuthConfigError with the variable to set, before the
service accepts a request.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..settings import AuthSettings, IdentitySettings
from .keys import KeyStore, KeyStoreError
from .tokens import InvalidJwks, RemoteJwks, StaticJwks, TokenVerifier


class AuthConfigError(RuntimeError):
    """The service cannot check or sign tokens as configured; the message says what to set."""


def token_verifier(settings: AuthSettings, env_prefix: str) -> TokenVerifier:
    """The verifier of a service that is not the identity service."""
    if settings.auth_jwks_file:
        path = Path(settings.auth_jwks_file)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            jwks: StaticJwks | RemoteJwks = StaticJwks(document)
        except (OSError, ValueError, InvalidJwks) as exc:
            raise AuthConfigError(
                f"{env_prefix}AUTH_JWKS_FILE={path}: not a readable JWKS document ({exc})"
            ) from None
    elif settings.auth_jwks_url:
        if not settings.auth_jwks_url.startswith(("http://", "https://")):
            raise AuthConfigError(f"{env_prefix}AUTH_JWKS_URL must be an http(s) URL")
        jwks = RemoteJwks(settings.auth_jwks_url)
    else:
        raise AuthConfigError(
            f"set {env_prefix}AUTH_JWKS_URL to the identity service's "
            "/.well-known/jwks.json (microforge up does this for you)"
        )
    return TokenVerifier(jwks, settings.auth_issuer, settings.auth_audience)


def signing_keys(settings: IdentitySettings, env_prefix: str) -> KeyStore:
    """The identity service's keys; it refuses to start without one."""
    try:
        return KeyStore(settings.auth_key_dir)
    except KeyStoreError as exc:
        raise AuthConfigError(
            f"{exc}. Make a key with `microforge keys rotate` (microforge up makes development "
            f"keys itself) or point {env_prefix}AUTH_KEY_DIR at a folder of Ed25519 keys"
        ) from None


def own_verifier(keys: KeyStore, settings: AuthSettings) -> TokenVerifier:
    """The identity service checks tokens against its own keys: no HTTP round trip."""
    return TokenVerifier(StaticJwks(keys.jwks()), settings.auth_issuer, settings.auth_audience)


def project_issuer(project: str) -> str:
    """The `iss` of a project's tokens, unless AUTH_ISSUER says otherwise."""
    return f"urn:microforge:{project}:identity"


def project_audience(project: str) -> str:
    """The `aud` every service of a project accepts, unless AUTH_AUDIENCE says otherwise."""
    return f"urn:microforge:{project}"
