"""Errors the sandbox answers with, shaped like Klaviyo's. Messages never carry secrets."""

from __future__ import annotations

from typing import Any


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
        status: int,
        code: str,
        title: str,
        detail: str = "",
        *,
        source: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"HTTP {status} {code}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail or title
        self.source = source if source is not None else {"pointer": "/data/"}
        self.headers = dict(headers or {})
        self.meta = meta


def invalid(detail: str, *, parameter: str | None = None, pointer: str | None = None) -> APIError:
    """A 400 ``invalid``, pointing at a query parameter or at a member of the request body."""
    source = {"parameter": parameter} if parameter is not None else {"pointer": pointer or "/data"}
    return APIError(400, "invalid", "Invalid input.", detail, source=source)


def not_found(detail: str = "Not found.") -> APIError:
    """A 404 ``not_found``: an unknown path, or a resource the caller's account does not have."""
    return APIError(404, "not_found", "Not found.", detail)
