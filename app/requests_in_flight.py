"""How many requests this process is serving, and whether it has lately served one at a time:
counted by one middleware, read by the classify path (app/inference.py, `classify_one`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

# How long after two requests overlapped the process still counts as serving several at once:
# under concurrency the next request is usually a moment away, and should not find the event
# loop blocked by a forward pass (`classify_one`'s `alone`).
CROWD_MEMORY_S = 0.1  # ~10 forward passes on a CPU


@dataclass
class RequestsInFlight:
    """Requests being served, probes aside (`ConcurrencyLimitMiddleware` counts them; one event
    loop, so no lock)."""

    count: int = 0
    crowded_until: float = 0.0  # time.monotonic() until which requests count as overlapping

    def enter(self) -> None:
        self.count += 1
        if self.count > 1:
            self.crowded_until = time.monotonic() + CROWD_MEMORY_S

    def leave(self) -> None:
        self.count -= 1

    async def one_at_a_time(self) -> bool:
        """The caller's request is the only one, and none overlapped another lately."""
        # Requests whose bytes have arrived are counted first: in two turns of the loop the
        # server reads them and their tasks enter the middleware. (Without this, one blocked
        # loop would serialise a burst, and each request in turn would look alone.)
        for _ in range(2):
            await asyncio.sleep(0)
        return self.count <= 1 and time.monotonic() >= self.crowded_until
