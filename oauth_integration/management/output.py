"""Output helpers for the long-running management commands: throttled progress, short lists."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence


class ProgressThrottle:
    """Decides when a long run prints its next progress line.

    About every ``1/steps`` of the work and at least every ``every_seconds``, so a run over
    100,000 rows prints a few dozen lines, not one per row.
    """

    def __init__(
        self, total: int, *, steps: int = 20, every_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.step = max(1, math.ceil(total / steps))
        self.every_seconds = every_seconds
        self.clock = clock
        self.next_done = self.step
        self.last_printed = clock()

    def due(self, done: int) -> bool:
        """True when a line should be printed now that ``done`` units are done."""
        now = self.clock()
        if done < self.next_done and now - self.last_printed < self.every_seconds:
            return False
        self.next_done = (done // self.step + 1) * self.step
        self.last_printed = now
        return True


def name_some(names: Sequence[str], *, limit: int = 20) -> str:
    """``a, b, c`` or ``a, b, ... and 7 more``: enough to act on, never a wall of text."""
    shown = ", ".join(names[:limit])
    return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown
