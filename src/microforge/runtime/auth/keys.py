"""Ed25519 signing keys of the identity service, kept as PEM files in one folder.

Each key is `<kid>.pem` (PKCS#8, unencrypted, mode 0600) in a folder of mode 0700; the
kid is the key's RFC 7638 thumbprint. The newest file (by modification time) signs; every
key in the folder is published in the JWKS, so after `rotate()` the tokens signed with
the previous key keep verifying until `prune()` removes it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

log = logging.getLogger("microforge.auth.keys")

_MAX_KEY_FILE = 64 * 1024  # a PEM Ed25519 key is ~120 bytes; anything huge is not a key


class KeyStoreError(ValueError):
    """The key folder or one of its files cannot be used; the message names the path."""


def b64url(data: bytes) -> str:
    """Base64url without padding, as JOSE uses it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk_members(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The required members of an Ed25519 public JWK (RFC 8037)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}


def thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint: SHA-256 of the required members, sorted, no whitespace."""
    canonical = json.dumps(public_jwk_members(public_key), sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey
    path: Path
    modified_ns: int

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        return {
            **public_jwk_members(self.public_key),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }


class KeyStore:
    """The keys in `directory`, loaded at construction; newest first in `keys`."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.keys: tuple[SigningKey, ...] = ()
        self.reload()

    @classmethod
    def ensure(cls, directory: Path | str) -> KeyStore:
        """Open `directory`, creating it (0700) and a first key when there is none.

        Meant for development setups (`microforge up`); a production identity service
        should be given keys made on purpose.
        """
        path = Path(directory)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _key_files(path):
            _write_new_key(path, after_ns=0)
        return cls(path)

    def reload(self) -> None:
        """Read the folder again (e.g. after another process rotated the keys)."""
        if not self.directory.is_dir():
            raise KeyStoreError(f"key folder {self.directory} does not exist")
        loaded = [_load_key(path) for path in _key_files(self.directory)]
        if not loaded:
            raise KeyStoreError(f"key folder {self.directory} holds no Ed25519 key (*.pem)")
        # Newest first; the kid breaks ties so every process picks the same signer.
        loaded.sort(key=lambda key: (key.modified_ns, key.kid), reverse=True)
        by_kid: dict[str, SigningKey] = {}
        for key in loaded:
            if key.kid in by_kid:
                raise KeyStoreError(
                    f"{key.path} holds the same key as {by_kid[key.kid].path}; remove one"
                )
            by_kid[key.kid] = key
        self.keys = tuple(loaded)

    @property
    def signing_key(self) -> SigningKey:
        return self.keys[0]

    def rotate(self) -> str:
        """Add a new key, which signs from now on; return its kid."""
        kid = _write_new_key(self.directory, after_ns=self.signing_key.modified_ns)
        self.reload()
        return kid

    def prune(self, keep: int = 2) -> list[str]:
        """Delete all but the `keep` newest keys; return the kids removed.

        Tokens signed with a removed key stop verifying once the verifiers refetch the
        JWKS, so keep at least as many keys as rotations within one access-token TTL.
        """
        if keep < 1:
            raise ValueError("keep must be at least 1: the newest key signs")
        removed = self.keys[keep:]
        for key in removed:
            key.path.unlink(missing_ok=True)
        self.reload()
        return [key.kid for key in removed]

    def jwks(self) -> dict[str, Any]:
        """The public JWK set: every key in the folder, newest first."""
        return {"keys": [key.public_jwk() for key in self.keys]}


def _key_files(directory: Path) -> list[Path]:
    # Anything named *.pem counts (a dangling link too), so a broken one is reported
    # instead of silently leaving the service with fewer keys.
    return sorted(p for p in directory.iterdir() if p.suffix == ".pem" and not p.is_dir())


def _load_key(path: Path) -> SigningKey:
    try:
        info = path.stat()
        if info.st_size > _MAX_KEY_FILE:
            raise KeyStoreError(f"cannot use key file {path}: too large to be a PEM key")
        data = path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # TypeError: the file is encrypted and we have no password to give.
        raise KeyStoreError(
            f"cannot use key file {path}: not an unencrypted PEM private key ({exc})"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyStoreError(f"cannot use key file {path}: expected an Ed25519 key")
    if os.name == "posix" and info.st_mode & 0o077:
        # Warn rather than refuse: secret volumes (e.g. Kubernetes) often mount 0644.
        log.warning(
            "key file %s is readable by other users (mode %s); chmod 600 it",
            path,
            oct(stat.S_IMODE(info.st_mode)),
        )
    return SigningKey(
        kid=thumbprint(key.public_key()), private_key=key, path=path, modified_ns=info.st_mtime_ns
    )


def _write_new_key(directory: Path, *, after_ns: int) -> str:
    """Write a fresh key atomically as `<kid>.pem`, dated after `after_ns`; return its kid."""
    key = Ed25519PrivateKey.generate()
    kid = thumbprint(key.public_key())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    final = directory / f"{kid}.pem"
    # Not *.pem, so a concurrent reload never sees a half-written key.
    temp = directory / f".{kid}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        # "Newest signs" is decided by mtime. Some file systems keep whole seconds only,
        # so two quick rotations could tie: date the new key a whole second later.
        second = 1_000_000_000
        stamp = max(time.time_ns(), (after_ns // second + 1) * second)
        os.utime(temp, ns=(stamp, stamp))
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return kid
