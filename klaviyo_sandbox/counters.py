"""What the sandbox served, counted in the database: refresh-token grants and API requests.

Counted per grant (``Grant.refresh_requests`` and ``Grant.api_requests``) and, for
requests that belong to no grant (an unknown or replaced refresh token, an unknown access
token, an unknown path), in a ``Tally``. Every server process and thread shares the counts,
so a test can read them after driving the sandbox over HTTP::

    from klaviyo_sandbox import counters

    counters.reset()
    ...  # the code under test refreshes and calls the API
    assert counters.counts().refreshes == 1
    assert counters.counts(grant_id=issued.grant_id).api_requests == 20

``reset()`` also restarts ``KLAVIYO_SANDBOX_FAIL_REFRESHES`` (it counts a grant's refreshes).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F, Sum

from klaviyo_sandbox.models import Grant, Tally

# Each kind of request is counted in the Grant field of that name, or in the Tally of that name.
REFRESHES = "refresh_requests"
API_REQUESTS = "api_requests"


@dataclass(frozen=True, slots=True)
class Counts:
    refreshes: int
    api_requests: int


def counts(*, grant_id: int | None = None) -> Counts:
    """Refresh-token grant requests and API requests served: for one grant, or in total."""
    if grant_id is not None:
        grant = Grant.objects.filter(pk=grant_id).values("refresh_requests", "api_requests").first()
        if grant is None:
            return Counts(refreshes=0, api_requests=0)
        return Counts(refreshes=grant["refresh_requests"], api_requests=grant["api_requests"])
    granted = Grant.objects.aggregate(**{name: Sum(name) for name in (REFRESHES, API_REQUESTS)})
    tallies = dict(Tally.objects.values_list("name", "count"))
    return Counts(
        refreshes=(granted[REFRESHES] or 0) + tallies.get(REFRESHES, 0),
        api_requests=(granted[API_REQUESTS] or 0) + tallies.get(API_REQUESTS, 0),
    )


def reset() -> None:
    """Zero every count (and with it the count of injected refresh failures)."""
    with transaction.atomic():
        Grant.objects.update(refresh_requests=0, api_requests=0)
        Tally.objects.all().delete()


def count(name: str, *, grant_id: int | None) -> None:
    """Count one request of kind ``name`` (``REFRESHES`` or ``API_REQUESTS``), for a grant or for none."""
    if grant_id is not None:
        Grant.objects.filter(pk=grant_id).update(**{name: F(name) + 1})
        return
    if Tally.objects.filter(name=name).update(count=F("count") + 1):
        return
    try:
        with transaction.atomic():
            Tally.objects.create(name=name, count=1)
    except IntegrityError:  # created meanwhile by a concurrent request
        Tally.objects.filter(name=name).update(count=F("count") + 1)
