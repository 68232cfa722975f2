"""`RequestsInFlight.one_at_a_time`: when a /classify may run on the event loop itself."""

from __future__ import annotations

import asyncio

import pytest

import app.requests_in_flight as module
from app.requests_in_flight import RequestsInFlight


def test_one_at_a_time_until_requests_overlap_then_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(module, "CROWD_MEMORY_S", 0.2)

    async def scenario() -> list[bool]:
        flights = RequestsInFlight()
        seen = []
        flights.enter()  # the caller's own request
        seen.append(await flights.one_at_a_time())

        async def arriving() -> None:
            flights.enter()  # as the middleware does when the server starts the request

        # A request the server has read but not started yet: it is counted before the answer.
        arrival = asyncio.get_running_loop().create_task(arriving())
        seen.append(await flights.one_at_a_time())
        await arrival
        flights.leave()  # it is done: one in flight again, but they overlapped just now
        seen.append(await flights.one_at_a_time())
        await asyncio.sleep(0.25)
        seen.append(await flights.one_at_a_time())
        return seen

    assert asyncio.run(scenario()) == [True, False, False, True]
