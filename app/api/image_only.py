"""`POST /classify` with just an image, answered beneath FastAPI: the service's hot path.

Nearly every call a checkout or shelf camera makes is a form holding one `image` file, no other
field, no query string. For those, FastAPI's exception layer, routing, request object, form
parser (a spooled temporary file per upload), dependency solving and field validation are a
measurable part of what a request costs beyond the encoder (issue 10 allows 20%; README, "Where
the time of `POST /classify` goes"). `ImageOnlyClassify` answers them itself, with the code and
defaults of the declared route (`app.api.classify`), inside the service's own middleware (keys,
body cap, concurrency cap and metrics apply as to any request).

Everything else goes to the app untouched. The middleware answers only what it is sure of: a
form it does not recognise as exactly that, and any request it cannot answer with 200 (a bad
image, an index not ready, the database down), is handed to the declared route with its body
replayed, so faults get the contract's one answer from one place. A classification writes
nothing, so running one twice is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi.routing import APIRoute
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.classify import classify_image, classify_options
from app.scopes import Scope as SearchScope
from app.services import Services

FIELD = b"image"


@dataclass
class _Part:
    disposition: bytes = b""
    data: list[bytes] = field(default_factory=list)


class _FormReader:
    """python-multipart callbacks that keep each part's Content-Disposition and bytes."""

    def __init__(self) -> None:
        self.parts: list[_Part] = []
        self.header_name = b""
        self.header_value = b""
        self.ended = False  # the closing boundary was seen: the form is whole

    def on_part_begin(self) -> None:
        self.parts.append(_Part())

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.parts[-1].disposition = self.header_value
        self.header_name = self.header_value = b""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.parts[-1].data.append(data[start:end])

    def on_end(self) -> None:
        self.ended = True


def image_only(content_type: bytes, body: bytes) -> bytes | None:
    """The file's bytes when `body` is a whole multipart form of exactly one part, a non-empty
    file named `image`; None for anything else (another form, or not a form at all)."""
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        return None
    reader = _FormReader()
    callbacks = {
        "on_part_begin": reader.on_part_begin,
        "on_header_field": reader.on_header_field,
        "on_header_value": reader.on_header_value,
        "on_header_end": reader.on_header_end,
        "on_part_data": reader.on_part_data,
        "on_end": reader.on_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except MultipartParseError:
        return None
    if not reader.ended or len(reader.parts) != 1:
        return None
    part = reader.parts[0]
    disposition, options = parse_options_header(part.disposition)
    if disposition != b"form-data" or options.get(b"name") != FIELD or not options.get(b"filename"):
        return None
    data = b"".join(part.data)
    return data or None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that hands out the messages already read, then the connection's own."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class ImageOnlyClassify:
    """ASGI middleware, innermost of the service's: see the module's docstring. `route` is the
    declared `POST /classify` route: its path and method are what is taken here, and it is set
    on the scope as the router would (metrics label by it)."""

    def __init__(self, app: ASGIApp, route: APIRoute) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != self.route.path
            or scope["method"] not in (self.route.methods or ())
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
        if not content_type.startswith(b"multipart/form-data"):
            await self.app(scope, receive, send)
            return
        # The body is read in full (the body-cap middleware outside bounds it), as the form
        # parser would; a disconnect ends the reading and goes on to the app with the rest.
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        if messages[-1]["type"] == "http.request":
            body = b"".join(m.get("body", b"") for m in messages)
            answer = await self._answer(scope, content_type, body)
            if answer is not None:
                scope["route"] = self.route
                await answer(scope, receive, send)
                return
        await self.app(scope, _replay(messages, receive), send)

    async def _answer(self, scope: Scope, content_type: bytes, body: bytes) -> Response | None:
        services: Services | None = getattr(scope["app"].state, "services", None)
        if services is None:  # not started: the declared route says so
            return None
        data = image_only(content_type, body)
        if data is None:
            return None
        try:
            options = await classify_options(services)  # the declared defaults
            result = await classify_image(services, data, options, SearchScope())
        except Exception:  # the declared route answers it, as the contract words it
            return None
        # pydantic's own JSON encoder: the declared route's answer, without a dict in between.
        return Response(result.model_dump_json(), media_type="application/json")
