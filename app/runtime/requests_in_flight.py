"""How many requests this process is serving: counted by `ConcurrencyLimitMiddleware`, which
refuses more than `max_concurrency` at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RequestsInFlight:
    """Requests being served, probes aside (one event loop, so no lock)."""

    count: int = 0

    def enter(self) -> None:
        self.count += 1

    def leave(self) -> None:
        self.count -= 1
