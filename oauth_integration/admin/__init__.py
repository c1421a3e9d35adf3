"""Admin for Klaviyo connections: read-only, secrets never loaded or shown; actions call services.

One module per page family: ``connections`` (the connections list, a connection's page
and its actions), ``health`` (a dashboard page of the connections admin; ``chart`` draws
its charts), ``history`` (pending authorizations and the event log) and ``base``
(what they share). Importing this package registers them all.
"""

from oauth_integration.admin import connections, history  # noqa: F401  (registers the admin pages)
