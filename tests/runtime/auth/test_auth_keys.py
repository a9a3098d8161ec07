"""KeyStore: the identity service's folder of Ed25519 signing keys."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from microforge.runtime.auth.keys import KeyStore, KeyStoreError
from microforge.runtime.auth.tokens import InvalidToken, StaticJwks, TokenIssuer, TokenVerifier

ISS = "urn:microforge:test:identity"
AUD = "urn:microforge:test"


def pem_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.pem"))


def verifier_for(store: KeyStore) -> TokenVerifier:
    return TokenVerifier(StaticJwks(store.jwks()), ISS, AUD)


def test_ensure_creates_a_private_folder_and_one_key(tmp_path: Path) -> None:
    folder = tmp_path / "keys" / "identity"
    store = KeyStore.ensure(folder)
    files = pem_files(folder)
    assert len(files) == 1
    assert files[0].name == f"{store.signing_key.kid}.pem"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    # A second ensure keeps the existing key.
    assert KeyStore.ensure(folder).signing_key.kid == store.signing_key.kid
    assert len(pem_files(folder)) == 1


def test_kid_is_the_rfc7638_thumbprint(tmp_path: Path) -> None:
    store = KeyStore.ensure(tmp_path)
    raw = store.signing_key.private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    members = '{"crv":"Ed25519","kty":"OKP","x":"' + x + '"}'
    expected = base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).rstrip(b"=")
    assert store.signing_key.kid == expected.decode()


def test_jwks_publishes_public_keys_only(tmp_path: Path) -> None:
    store = KeyStore.ensure(tmp_path)
    store.rotate()
    jwks = store.jwks()
    assert [key["kid"] for key in jwks["keys"]] == [key.kid for key in store.keys]
    for key in jwks["keys"]:
        assert set(key) == {"kty", "crv", "x", "kid", "use", "alg"}
        assert (key["kty"], key["crv"], key["use"], key["alg"]) == (
            "OKP",
            "Ed25519",
            "sig",
            "EdDSA",
        )
        assert len(base64.urlsafe_b64decode(key["x"] + "=")) == 32
    json.dumps(jwks)  # serialisable as is


async def test_rotation_keeps_old_tokens_valid(tmp_path: Path) -> None:
    store = KeyStore.ensure(tmp_path)
    old_token, _ = TokenIssuer(store, ISS, AUD).issue("u1", "user", ["member"])
    old_kid = store.signing_key.kid

    new_kid = store.rotate()

    assert new_kid != old_kid
    assert store.signing_key.kid == new_kid
    new_token, _ = TokenIssuer(store, ISS, AUD).issue("u2", "user", [])
    verifier = verifier_for(store)
    assert (await verifier.verify(old_token)).subject == "u1"
    assert (await verifier.verify(new_token)).subject == "u2"
    # Another process opening the folder agrees on who signs.
    assert KeyStore(tmp_path).signing_key.kid == new_kid


async def test_prune_drops_the_oldest_keys(tmp_path: Path) -> None:
    store = KeyStore.ensure(tmp_path)
    first = store.signing_key.kid
    first_token, _ = TokenIssuer(store, ISS, AUD).issue("u1", "user", [])
    second = store.rotate()
    third = store.rotate()

    assert store.prune(keep=2) == [first]

    assert [key.kid for key in store.keys] == [third, second]
    assert sorted(p.stem for p in pem_files(tmp_path)) == sorted([second, third])
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await verifier_for(store).verify(first_token)
    assert store.prune(keep=2) == []
    with pytest.raises(ValueError, match="at least 1"):
        store.prune(keep=0)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(KeyStoreError, match="does not exist") as info:
        KeyStore(missing)
    assert str(missing) in str(info.value)


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("not a key")
    with pytest.raises(KeyStoreError, match="holds no Ed25519 key") as info:
        KeyStore(tmp_path)
    assert str(tmp_path) in str(info.value)


def _ec_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _encrypted_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


def _public_pem() -> bytes:
    return (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"garbage", "not an unencrypted PEM private key", id="garbage"),
        pytest.param(b"", "not an unencrypted PEM private key", id="empty"),
        pytest.param(_public_pem(), "not an unencrypted PEM private key", id="public-key"),
        pytest.param(_encrypted_pem(), "not an unencrypted PEM private key", id="encrypted"),
        pytest.param(_ec_pem(), "expected an Ed25519 key", id="ec-key"),
        pytest.param(b"x" * 70_000, "too large", id="huge"),
    ],
)
def test_an_invalid_key_file_is_named(tmp_path: Path, content: bytes, message: str) -> None:
    KeyStore.ensure(tmp_path)
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    with pytest.raises(KeyStoreError, match=message) as info:
        KeyStore(tmp_path)
    assert str(bad) in str(info.value)


def test_a_dangling_key_link_is_named(tmp_path: Path) -> None:
    KeyStore.ensure(tmp_path)
    link = tmp_path / "gone.pem"
    link.symlink_to(tmp_path / "elsewhere" / "gone.pem")
    with pytest.raises(KeyStoreError, match="cannot read key file") as info:
        KeyStore(tmp_path)
    assert str(link) in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_file_is_named(tmp_path: Path) -> None:
    store = KeyStore.ensure(tmp_path)
    path = store.signing_key.path
    path.chmod(0)
    try:
        with pytest.raises(KeyStoreError, match="cannot read key file") as info:
            KeyStore(tmp_path)
    finally:
        path.chmod(0o600)
    assert str(path) in str(info.value)


def test_the_same_key_twice_is_refused(tmp_path: Path) -> None:
    store = KeyStore.ensure(tmp_path)
    copy = tmp_path / "copy.pem"
    copy.write_bytes(store.signing_key.path.read_bytes())
    with pytest.raises(KeyStoreError, match="same key"):
        KeyStore(tmp_path)


def test_a_world_readable_key_is_loaded_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = KeyStore.ensure(tmp_path)
    store.signing_key.path.chmod(0o644)
    with caplog.at_level("WARNING", logger="microforge.auth.keys"):
        assert KeyStore(tmp_path).signing_key.kid == store.signing_key.kid
    assert "chmod 600" in caplog.text
