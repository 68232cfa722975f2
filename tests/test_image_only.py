"""The image-only fast path of `POST /classify` (app/api/image_only.py): which forms it takes,
and that it answers them itself, as the declared route would, handing every other request to
the app with its body intact. Through a real server, test_api.py checks the same answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.api.classify import declared_route
from app.api.image_only import ImageOnlyClassify, image_only
from tests.image_factory import jpeg
from tests.support.inprocess import in_process_client
from tests.support.paths import GROCERY

ICONIC = GROCERY / "iconic-images-and-descriptions"
KIWI = sorted((GROCERY / "test/Fruit/Kiwi").glob("*.jpg"))[0]


def encoded(**kwargs: Any) -> tuple[bytes, bytes]:
    """(content type, body) as httpx, a real client, encodes the form."""
    request = httpx.Request("POST", "http://x/classify", **kwargs)
    return request.headers["content-type"].encode(), request.read()


def form(*parts: bytes, boundary: bytes = b"b0", close: bool = True) -> tuple[bytes, bytes]:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    if close:
        body += b"--" + boundary + b"--\r\n"
    return b"multipart/form-data; boundary=" + boundary, body


def file_part(name: bytes, data: bytes, filename: bytes = b"x.jpg") -> bytes:
    disposition = b'form-data; name="' + name + b'"; filename="' + filename + b'"'
    return b"Content-Disposition: " + disposition + b"\r\nContent-Type: image/jpeg\r\n\r\n" + data


def test_takes_exactly_one_non_empty_image_file() -> None:
    photo = KIWI.read_bytes()
    assert image_only(*encoded(files={"image": jpeg(KIWI)})) == photo
    assert image_only(*form(file_part(b"image", b"with --b0 inside\r\n-- b0\r\n"))) == (
        b"with --b0 inside\r\n-- b0\r\n"
    )
    refused = {
        "another field too": encoded(files={"image": jpeg(KIWI)}, data={"top_k": "3"}),
        "two images": encoded(files=[("image", jpeg(KIWI)), ("image", jpeg(KIWI))]),
        "another name": encoded(files={"images": jpeg(KIWI)}),
        "a text field": encoded(data={"image": "not a file"}),
        "an empty file": form(file_part(b"image", b"")),
        "no file name": form(file_part(b"image", b"abc", filename=b"")),
        "no closing boundary": form(file_part(b"image", b"abc"), close=False),
        "another boundary": (
            b"multipart/form-data; boundary=zz",
            form(file_part(b"image", b"a"))[1],
        ),
        "no boundary": (b"multipart/form-data", form(file_part(b"image", b"abc"))[1]),
        "not a form": (b"application/json", b'{"image": "abc"}'),
        "no parts": form(),
    }
    for case, (content_type, body) in refused.items():
        assert image_only(content_type, body) is None, case


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with in_process_client(tmp_path_factory.mktemp("image-only") / "data") as c:
        for sku, path in (
            ("kiwi", "Fruit/Kiwi/Kiwi_Iconic.jpg"),
            ("pear", "Fruit/Pear/Anjou/Anjou_Iconic.jpg"),
        ):
            answer = c.post(
                "/products", data={"sku": sku, "name": sku}, files={"images": jpeg(ICONIC / path)}
            )
            assert answer.status_code == 201, answer.text
        yield c


class Recorder:
    """The app behind the middleware: records what reaches it, answers 299."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def call(
    client: TestClient, inner: Recorder, content_type: bytes, body: bytes, query: bytes = b""
) -> tuple[int, bytes, Any]:
    """One request through `ImageOnlyClassify(inner)` on the started app's event loop, its body
    in two chunks as a socket may deliver it: (status, body, scope["route"])."""
    app = client.app
    middleware = ImageOnlyClassify(inner, declared_route())  # type: ignore[arg-type]
    half = len(body) // 2
    chunks = [
        {"type": "http.request", "body": body[:half], "more_body": True},
        {"type": "http.request", "body": body[half:], "more_body": False},
    ]
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/classify",
        "query_string": query,
        "headers": [(b"content-type", content_type)],
        "app": app,
    }

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    assert client.portal is not None
    client.portal.call(middleware, scope, receive, send)
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body_out, scope.get("route")


def test_answers_an_image_alone_itself_as_the_declared_route(client: TestClient) -> None:
    inner = Recorder()
    status, body, route = call(client, inner, *encoded(files={"image": jpeg(KIWI)}))
    assert inner.bodies == [] and status == 200
    declared = client.post("/classify", files={"image": jpeg(KIWI)}, data={"top_k": "5"})
    assert declared.status_code == 200
    assert httpx.Response(200, content=body).json() == declared.json()
    assert declared.json()["matches"][0]["sku"] == "kiwi"
    assert getattr(route, "path", None) == "/classify"  # metrics label it as the route


@pytest.mark.parametrize(
    "case",
    ["another field", "a query string", "two images", "not an image", "no closing boundary"],
)
def test_hands_everything_else_to_the_app_with_its_body(client: TestClient, case: str) -> None:
    content_type, body = {
        "another field": encoded(files={"image": jpeg(KIWI)}, data={"top_k": "1"}),
        "a query string": encoded(files={"image": jpeg(KIWI)}),
        "two images": encoded(files=[("image", jpeg(KIWI)), ("image", jpeg(KIWI))]),
        "not an image": encoded(files={"image": ("x.jpg", b"nope", "image/jpeg")}),
        "no closing boundary": form(file_part(b"image", KIWI.read_bytes()), close=False),
    }[case]
    inner = Recorder()
    query = b"top_k=1" if case == "a query string" else b""
    status, _, _ = call(client, inner, content_type, body, query)
    assert status == 299 and inner.bodies == [body]


def test_hands_on_while_the_service_is_not_started(client: TestClient) -> None:
    state = client.app.state  # type: ignore[attr-defined]
    services, state.services = state.services, None  # as before the lifespan has built them
    try:
        inner = Recorder()
        content_type, body = encoded(files={"image": jpeg(KIWI)})
        assert call(client, inner, content_type, body)[0] == 299 and inner.bodies == [body]
    finally:
        state.services = services
