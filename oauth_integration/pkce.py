"""PKCE and state: pure functions, no Django, no I/O (RFC 7636)."""

from __future__ import annotations

import base64
import hashlib
import secrets


def new_code_verifier() -> str:
    """RFC 7636 §4.1: 43-128 characters from the unreserved set; 64 random bytes give 86."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """RFC 7636 §4.2 (S256): BASE64URL(SHA256(ASCII(verifier))) without '=' padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    """An unguessable, single-use OAuth ``state`` (256 bits)."""
    return secrets.token_urlsafe(32)


def digest(value: str) -> str:
    """SHA-256 hex digest: how states and browser bindings are stored and looked up."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()
