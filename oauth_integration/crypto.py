"""Authenticated encryption of secrets at rest (AES-256-GCM).

Envelope: ``v1$<key id>$<base64url(nonce || ciphertext || tag)>``.

* The key id (8 hex chars of a keyed SHA-256 of the key) records which key made the
  ciphertext, so fallback keys can decrypt older values and rotation can find them.
* The caller's ``context`` (model, field and row identity) is authenticated as AES-GCM
  associated data: a ciphertext copied into another row or field fails to decrypt.
* Every failure raises; a ciphertext is never handed back as if it were plaintext.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from oauth_integration.conf import conf
from oauth_integration.exceptions import EncryptionKeyError, TokenDecryptionError

VERSION = "v1"
KEY_HEX_LENGTH = 64
_NONCE_BYTES = 12


@dataclass(frozen=True)
class Keyring:
    """The current key (encrypts and decrypts) and the fallbacks (decrypt only)."""

    current_id: str
    ciphers: dict[str, AESGCM]

    def __repr__(self) -> str:
        return f"Keyring(current_id={self.current_id!r}, key_ids={sorted(self.ciphers)!r})"


def parse_key(hex_key: str, *, name: str = "TOKEN_ENCRYPTION_KEY") -> bytes:
    """Decode a 64-hex-character key. The message names the setting, never the value."""
    if len(hex_key) != KEY_HEX_LENGTH:
        raise EncryptionKeyError(f"{name} must be {KEY_HEX_LENGTH} hexadecimal characters (32 bytes)")
    try:
        return binascii.unhexlify(hex_key)
    except (binascii.Error, ValueError) as exc:
        raise EncryptionKeyError(f"{name} must contain only hexadecimal characters") from exc


def key_id(key: bytes) -> str:
    """A short, non-secret fingerprint of a key, stored in every envelope it makes."""
    return hashlib.sha256(b"oauth_integration key id\x00" + key).hexdigest()[:8]


def development_key(secret_key: str) -> bytes:
    """The key used under DEBUG when TOKEN_ENCRYPTION_KEY is unset (derived from SECRET_KEY)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"oauth_integration dev token key")
    return hkdf.derive(secret_key.encode("utf-8"))


GENERATE_KEY = "python -c 'import secrets; print(secrets.token_hex(32))'"


def keyring() -> Keyring:
    """The keyring for the configured keys (cached per key set, so settings overrides apply).

    Under DEBUG without TOKEN_ENCRYPTION_KEY the key is derived from SECRET_KEY, but never
    from the public development placeholder: anyone could derive that one too.
    """
    hex_key = conf.encryption_key
    derivable = not hex_key and conf.debug and not conf.secret_key_is_placeholder
    return _keyring(hex_key, conf.encryption_key_fallbacks, conf.secret_key if derivable else None)


@functools.lru_cache(maxsize=8)
def _keyring(hex_key: str, fallback_hex_keys: tuple[str, ...], development_secret: str | None) -> Keyring:
    # Cached on the settings' own strings: every encrypt and decrypt asks for the keyring,
    # and parsing keys (or deriving the development key) each time was a quarter of the cost.
    # Errors are raised afresh on every call (lru_cache does not keep exceptions).
    if hex_key:
        current = parse_key(hex_key)
    elif development_secret is not None:
        current = development_key(development_secret)
    else:
        raise EncryptionKeyError(f"TOKEN_ENCRYPTION_KEY is not set; generate one with: {GENERATE_KEY}")
    fallbacks = tuple(
        parse_key(k, name=f"TOKEN_ENCRYPTION_KEY_FALLBACKS[{i}]") for i, k in enumerate(fallback_hex_keys)
    )
    ciphers: dict[str, AESGCM] = {}
    for key in (*fallbacks, current):  # the current key wins a (vanishingly unlikely) id clash
        ciphers[key_id(key)] = AESGCM(key)
    return Keyring(current_id=key_id(current), ciphers=ciphers)


def encrypt(plaintext: str, *, context: str) -> str:
    """Encrypt under the current key, binding the ciphertext to ``context``."""
    ring = keyring()
    nonce = os.urandom(_NONCE_BYTES)
    sealed = ring.ciphers[ring.current_id].encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
    payload = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
    return f"{VERSION}${ring.current_id}${payload}"


def envelope_key_id(envelope: str) -> str:
    """The id of the key that made ``envelope``; raises TokenDecryptionError if it is no envelope."""
    return _split(envelope)[1]


def decrypt(envelope: str, *, context: str) -> str:
    """Decrypt with whichever configured key made ``envelope``; verify it belongs to ``context``."""
    _, kid, payload = _split(envelope)
    if kid not in keyring().ciphers:
        raise TokenDecryptionError(
            f"Value for {context} was encrypted with key {kid}, which is neither "
            "TOKEN_ENCRYPTION_KEY nor one of TOKEN_ENCRYPTION_KEY_FALLBACKS"
        )
    return _open(kid, payload, context)


@functools.lru_cache(maxsize=4096)
def _open(kid: str, payload: str, context: str) -> str:
    # Remembered: the same envelope is read on every call to Klaviyo until its token changes.
    # A key id names exactly one key, and a configured key decrypts a given envelope for a
    # given context to one plaintext or to an error (errors are not remembered), so the
    # answer stays right while the key is configured; decrypt() checks that first. Entries
    # are keyed by the row's context: a value is never handed to another customer.
    cipher = keyring().ciphers[kid]
    try:
        raw = base64.urlsafe_b64decode(payload.encode("ascii"))
        plaintext = cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8"))
    except (InvalidTag, ValueError, binascii.Error) as exc:
        raise TokenDecryptionError(
            f"Value for {context} failed authentication: tampered with, or copied from another row or field"
        ) from exc
    return plaintext.decode("utf-8")


def _split(envelope: str) -> tuple[str, str, str]:
    parts = envelope.split("$")
    if len(parts) != 3 or parts[0] != VERSION or len(parts[1]) != 8:
        raise TokenDecryptionError("Stored value is not an encrypted envelope (was it written in plain text?)")
    return parts[0], parts[1], parts[2]
