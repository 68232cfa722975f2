"""ASGI middleware: API keys, the request body's size and pace (enforced while streaming),
requests in flight, request metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.runtime.metrics import ServiceMetrics
from app.runtime.requests_in_flight import RequestsInFlight
from app.settings import Role

ROLE_STATE = "api_role"  # where a request's role is kept in its scope's state


def role_of(scope: Scope) -> Role | None:
    """The role ApiKeyMiddleware found for this request's key; None without configured keys."""
    role: Role | None = scope.get("state", {}).get(ROLE_STATE)
    return role


class ApiKeyMiddleware:
    """401 before any byte of the body is read, unless the path is a probe, the API docs or the
    console's static files. A valid key's role goes into the request's state, where the routes
    that need more than `classify` check it (app/api/deps.py `requires`)."""

    OPEN_PATHS = frozenset(
        {"/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", "/"}
    )
    OPEN_PREFIX = "/console/"  # the web console's static files: no data, and it asks for the key

    def __init__(self, app: ASGIApp, keys: Mapping[str, Role]) -> None:
        self.app = app
        self.keys = [(key.encode(), role) for key, role in keys.items()]

    def _role(self, given: bytes) -> Role | None:
        found: Role | None = None
        for key, role in self.keys:  # no early exit: timing says nothing of which key matched
            if hmac.compare_digest(given, key):
                found = role
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not self.keys
            or path in self.OPEN_PATHS
            or path.startswith(self.OPEN_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"x-api-key", b"")
        role = self._role(given)
        if role is not None:
            scope.setdefault("state", {})[ROLE_STATE] = role
            await self.app(scope, receive, send)
            return
        for message in _error(401, "missing or invalid API key"):
            await send(message)


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


def _error(status: int, detail: str, close: bool = False) -> tuple[Message, Message]:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:  # the rest of the body will never be read: the connection cannot be reused
        headers.append((b"connection", b"close"))
    start = {"type": "http.response.start", "status": status, "headers": headers}
    return start, {"type": "http.response.body", "body": body}


class BodyGuardMiddleware:
    """The request body, while it is read: 413 as soon as the declared or the streamed size
    passes `max_bytes`, 408 when it stops coming (nothing for `timeout_s`) or comes slower
    than `min_rate` bytes per second on average once `timeout_s` has passed. A slow client
    thus gives back its place among the requests in flight. Nothing is buffered."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float, min_rate: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body too large (limit {self.max_bytes} bytes)"
        too_slow = (
            f"request body too slow (nothing for {self.timeout_s:g} s, or under "
            f"{self.min_rate:g} bytes/s)"
        )
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            for message in _error(413, too_large):
                await send(message)
            return
        loop = asyncio.get_running_loop()
        begin = loop.time()
        received = 0
        complete = False
        refused: tuple[Message, Message] | None = None
        started = False

        async def guarded_receive() -> Message:
            nonlocal received, complete, refused
            if complete:  # afterwards the app only listens for a disconnect: no deadline
                return await receive()
            now = loop.time()
            # The next bytes are due when either rule would be broken without them.
            due = min(now + self.timeout_s, begin + self.timeout_s + received / self.min_rate)
            try:
                async with asyncio.timeout(max(due - now, 0.0)):
                    message = await receive()
            except TimeoutError:
                refused = _error(408, too_slow, close=True)
                raise BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    refused = _error(413, too_large)
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # Frameworks may turn the receive error into their own 400; answer ours instead.
            nonlocal started
            if refused is not None:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    for reply in refused:
                        await send(reply)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except (BodyTooLarge, BodyTooSlow):
            if not started and refused is not None:
                for message in refused:
                    await send(message)


class ConcurrencyLimitMiddleware:
    """JSON 503 while `max_in_flight` requests are being served; probes always get through.

    The body of a refused request is read and dropped before the answer: a connection closed
    with unread bytes is reset by the kernel, and an uploading client would see no answer at all.
    """

    OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

    def __init__(self, app: ASGIApp, max_in_flight: int, in_flight: RequestsInFlight) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight.count >= self.max_in_flight:
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
            start, body = _error(503, "server busy, retry later")
            start["headers"].append((b"retry-after", b"1"))
            await send(start)
            await send(body)
            return
        self.in_flight.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight.leave()


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        begin = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, path, str(status)).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - begin)
