"""How the sandbox makes and stores secrets: random tokens, SHA-256 digests, PKCE S256."""

from __future__ import annotations

import base64
import hashlib
import secrets


def digest(value: str) -> str:
    """SHA-256 hex digest: how codes and tokens are stored and looked up."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(verifier))) without padding."""
    raw = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def new_secret(prefix: str) -> str:
    """A fresh random token (256 bits) with a recognisable prefix."""
    return f"{prefix}{secrets.token_urlsafe(32)}"
