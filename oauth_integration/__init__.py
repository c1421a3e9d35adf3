"""Connect many customers' Klaviyo accounts to a Django project with OAuth 2.0 + PKCE."""

# The distribution's version, in this one place (pyproject.toml reads it from here).
__version__ = "1.2.0"
