"""Errors the sandbox answers with, shaped like Klaviyo's. Messages never carry secrets."""

from __future__ import annotations


class SandboxError(Exception):
    """Base for every error the sandbox raises deliberately."""


class OAuthError(SandboxError):
    """An OAuth token or revoke endpoint error: ``{"error": ..., "error_description": ...}``."""

    def __init__(self, error: str, description: str = "", *, status: int = 400) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status


class APIError(SandboxError):
    """A JSON:API error response of the sandbox API."""

    def __init__(
        self,
        *,
        status: int,
        code: str,
        title: str,
        detail: str = "",
        source: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"HTTP {status} {code}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail or title
        self.source = source if source is not None else {"pointer": "/data/"}
        self.headers = dict(headers or {})
