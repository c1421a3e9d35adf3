"""Klaviyo's rate limits: per app installation, account and endpoint, in fixed burst and steady windows.

Each endpoint has a tier (its ``x-klaviyo-ratelimit`` in Klaviyo's OpenAPI description): a
burst limit per second and a steady limit per minute, and for a few a daily limit. Every
limit is multiplied by ``KLAVIYO_SANDBOX_RATE_LIMIT_SCALE`` (at least 1 remains; a scale
of 0 turns limiting off). Successful answers carry ``RateLimit-Limit`` /
``-Remaining`` / ``-Reset`` for the window nearest to exhaustion, as Klaviyo's do
(``RateLimit-Limit: 75, 75;w=1, 750;w=60``); a 429 carries only ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.db import transaction

from klaviyo_sandbox.conf import conf
from klaviyo_sandbox.exceptions import APIError
from klaviyo_sandbox.models import RateWindow


@dataclass(frozen=True, slots=True)
class Tier:
    burst: int  # per second
    steady: int  # per minute
    daily: int | None = None  # per day


XS = Tier(1, 15)
S = Tier(3, 60)
M = Tier(10, 150)
L = Tier(75, 750)
XL = Tier(350, 3500)


@dataclass(frozen=True, slots=True)
class Window:
    """Where one window stands after this request."""

    seconds: int
    limit: int
    used: int
    reset: float  # seconds until the window ends

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The windows of one request, and the headers of a successful answer."""

    windows: tuple[Window, ...]

    def headers(self) -> dict[str, str]:
        nearest = min(self.windows, key=lambda window: (window.remaining, window.seconds))
        policies = ", ".join(f"{window.limit};w={window.seconds}" for window in self.windows)
        return {
            "RateLimit-Limit": f"{nearest.limit}, {policies}",
            "RateLimit-Remaining": str(nearest.remaining),
            "RateLimit-Reset": str(math.floor(nearest.reset)),
        }


# Each window's name (its columns in RateWindow) and length in seconds.
_WINDOWS = (("burst", 1), ("steady", 60), ("daily", 86400))


def _scaled(limit: int, scale: float) -> int:
    return max(1, math.floor(limit * scale))


def consume(*, client_id: str, account_id: str, operation: str, tier: Tier) -> RateLimit | None:
    """Count this request in its windows. None when limiting is off; APIError 429 past a limit.

    A throttled request is not counted. One row per app, account and endpoint, locked
    for the update, so every server process and thread shares the windows.
    """
    scale = conf.rate_limit_scale
    if not scale:
        return None
    now = time.time()
    limits = {"burst": tier.burst, "steady": tier.steady, "daily": tier.daily}
    with transaction.atomic():
        row, _ = RateWindow.objects.select_for_update().get_or_create(
            client_id=client_id, account_id=account_id, operation=operation
        )
        windows = []
        for name, seconds in _WINDOWS:
            limit = limits[name]
            if limit is None:
                continue
            current = int(now // seconds)
            if getattr(row, f"{name}_window") != current:
                setattr(row, f"{name}_window", current)
                setattr(row, f"{name}_count", 0)
            reset = (current + 1) * seconds - now
            windows.append((name, Window(seconds, _scaled(limit, scale), getattr(row, f"{name}_count"), reset)))
        exhausted = [window for _, window in windows if window.used >= window.limit]
        if not exhausted:
            for name, _ in windows:
                setattr(row, f"{name}_count", getattr(row, f"{name}_count") + 1)
        row.save()
    if exhausted:
        raise _throttled(max(1, math.ceil(max(window.reset for window in exhausted))))
    return RateLimit(tuple(Window(w.seconds, w.limit, w.used + 1, w.reset) for _, w in windows))


def _throttled(retry_after: int) -> APIError:
    unit = "second" if retry_after == 1 else "seconds"
    detail = f"Request was throttled. Expected available in {retry_after} {unit}."
    source, headers = {"pointer": "/data"}, {"Retry-After": str(retry_after)}
    return APIError(429, "throttled", "Request was throttled.", detail, source=source, headers=headers)
