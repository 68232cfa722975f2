"""What a hostile client with a valid key tried, each refused at the door and nothing stored:
JSON that a database or the response encoder cannot hold, URLs that clients rewrite, scans that
end early, decompression bombs, bodies that trickle in, and secrets in error messages.

The in-process tests run on SQLite and PostgreSQL (what each database refuses differs: SQLite's
JSON functions refuse Infinity, PostgreSQL's jsonb refuses NUL); the trickling client needs a
real uvicorn socket.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ImageFile

from app.api.schemas import ImagesAdded, ProductCreated
from app.encoder.decode import DecodeBudget, decode_photo
from tests.image_factory import jpeg, jpeg_claiming, zero_png
from tests.support.cli import retailklip
from tests.support.databases import backend_database
from tests.support.inprocess import in_process_client
from tests.support.paths import GROCERY
from tests.support.servers import (
    LiveServer,
    running_server,
    settings_env,
    suite_settings,
    wait_for,
)

BANANA = GROCERY / "iconic-images-and-descriptions/Fruit/Banana/Banana_Iconic.jpg"
QUERY = GROCERY / "test/Fruit/Banana/Banana_001.jpg"
FILTERED = {"filter": json.dumps({"brand": "Fine"})}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp(f"hostile-{request.param}")
    with (
        backend_database(request.param) as url,
        in_process_client(root / "data", database_url=url) as c,
    ):
        fine = c.post(
            "/products",
            data={"sku": "fine", "name": "Fine", "metadata": '{"brand": "Fine"}'},
            files=[("images", jpeg(BANANA))],
        )
        assert fine.status_code == 201, fine.text
        yield c


def product_count(client: TestClient) -> int:
    total: int = client.get("/products").json()["total"]
    return total


def classify_filtered(client: TestClient) -> Any:
    return client.post("/classify", data=FILTERED, files={"image": jpeg(QUERY)})


@pytest.mark.parametrize(
    ("metadata", "detail"),
    [
        ('{"a": "\\ud800"}', "metadata: a string at a holds a lone surrogate (not Unicode text)"),
        ('{"\\udc00": 1}', "metadata: a key holds a lone surrogate (not Unicode text)"),
        ('{"a": 1e400}', "metadata: the number 1e400 does not fit a 64-bit float"),
        ('{"a": -1e400}', "metadata: the number -1e400 does not fit a 64-bit float"),
        ('{"a": 18446744073709551616}', "metadata: the integer 18446744073709551616 does not"),
        ('{"a\\u0000b": "x"}', "metadata: a key holds a NUL character"),
        ('{"a": ["x\\u0000y"]}', "metadata: a string at a[0] holds a NUL character"),
        ('{"a": 1, "a": 2}', 'metadata: the key "a" appears twice in one object'),
        ('{"a": ' + "[" * 40 + "]" * 40 + "}", "metadata: nested deeper than 32 levels"),
        ('{"a": NaN}', "metadata must be a JSON object"),
        ('{"a": Infinity}', "metadata must be a JSON object"),
    ],
)
def test_metadata_a_database_or_the_encoder_cannot_hold_is_422(
    client: TestClient, metadata: str, detail: str
) -> None:
    before = product_count(client)
    answer = client.post(
        "/products",
        data={"sku": "hostile", "name": "Hostile", "metadata": metadata},
        files=[("images", jpeg(BANANA))],
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(detail), answer.text
    assert product_count(client) == before
    assert client.get("/products/hostile").status_code == 404
    assert classify_filtered(client).status_code == 200


@pytest.mark.parametrize(
    ("filter_text", "detail"),
    [
        ('{"brand": "\\ud800"}', "filter: a string at brand holds a lone surrogate"),
        ('{"brand": 1e400}', "filter: the number 1e400 does not fit a 64-bit float"),
        ('{"brand\\u0000": "x"}', "filter: a key holds a NUL character"),
    ],
)
def test_filters_held_to_the_same_rule_are_422(
    client: TestClient, filter_text: str, detail: str
) -> None:
    answer = client.post("/classify", data={"filter": filter_text}, files={"image": jpeg(QUERY)})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(detail), answer.text


@pytest.mark.parametrize("sku", [".", "..", "...."])
def test_skus_of_dots_only_are_refused(client: TestClient, sku: str) -> None:
    answer = client.post(
        "/products", data={"sku": sku, "name": "Dots"}, files=[("images", jpeg(BANANA))]
    )
    assert answer.status_code == 422
    assert answer.json()["detail"] == (
        "sku: must be 1-64 characters of A-Za-z0-9._-, not only dots"
    )
    assert (
        client.post(
            "/products", data={"sku": "v1.0", "name": "Dots"}, files=[("images", jpeg(BANANA))]
        ).status_code
        == 201
    )
    assert client.delete("/products/v1.0").status_code == 204


def test_a_jpeg_whose_scan_ends_early_is_refused(client: TestClient) -> None:
    answer = client.post(
        "/classify", files={"image": ("claims.jpg", jpeg_claiming(6600, 6000), "image/jpeg")}
    )
    assert (answer.status_code, answer.json()) == (
        400,
        {"detail": "image: image is truncated or corrupt"},
    )


# JSON text as a client may write it: valid values, and the values that poisoned a database or
# the response (lone surrogates, NUL, numbers past a float64, duplicate keys, NaN).
_NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e400", "-1e400", "1e308", "-0.0", "2e-400", "NaN", "Infinity", "1E5"]),
)
_STRING = st.one_of(
    st.text(max_size=8).map(json.dumps),
    st.text(max_size=8).map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.sampled_from(['"\\ud800"', '"a\\u0000b"', '"\\udc00x"', '"\\ud83d\\ude00"', '"é"']),
)
_SCALAR = st.one_of(_NUMBER, _STRING, st.sampled_from(["true", "false", "null"]))
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(_STRING, inner), max_size=3).map(
            lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
        ),
    ),
    max_leaves=8,
)
_METADATA = st.lists(st.tuples(_STRING, _VALUE), max_size=4).map(
    lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
)


def _exactly(text: str) -> str:
    """A value's canonical text, keeping what `==` would blur: key order, 1 against 1.0."""
    return json.dumps(json.loads(text, object_pairs_hook=lambda pairs: pairs))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(metadata=_METADATA)
def test_what_is_accepted_is_served_back_equal_and_filters_keep_working(
    client: TestClient, metadata: str
) -> None:
    before = product_count(client)
    answer = client.post(
        "/products",
        data={"sku": "any", "name": "Any", "metadata": metadata},
        files=[("images", jpeg(BANANA))],
    )
    assert answer.status_code in (201, 422), answer.text
    if answer.status_code == 422:
        assert answer.json()["detail"].startswith("metadata"), answer.text
        assert product_count(client) == before
    else:
        served = client.get("/products/any")
        assert served.status_code == 200, served.text
        pairs = json.loads(served.text, object_pairs_hook=lambda pairs: pairs)
        [stored] = [value for key, value in pairs if key == "metadata"]
        assert json.dumps(stored) == _exactly(metadata)
        listed = client.get("/products", params={"limit": 500})
        assert listed.status_code == 200, listed.text
    filtered = classify_filtered(client)
    assert filtered.status_code == 200, filtered.text
    assert filtered.json()["matches"][0]["sku"] == "fine"
    if answer.status_code == 201:
        assert client.delete("/products/any").status_code == 204


def test_every_pixel_load_happens_inside_the_decode_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The budget bounds decoding memory only if no decoder loads pixels before it is held
    (PNG's reader loads the whole image to look for EXIF data after it)."""
    budget = DecodeBudget(10_000_000)
    loads: list[bool] = []
    real_load = ImageFile.ImageFile.load

    def watched(image: ImageFile.ImageFile) -> Any:
        loads.append(budget._free < budget.capacity)
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", watched)
    for data in (zero_png(2000, 1500), BANANA.read_bytes()):
        decode_photo(data, 40_000_000, lambda w, h: 4, budget)
    assert loads and all(loads), loads


def test_decodes_larger_than_the_budget_take_turns() -> None:
    budget = DecodeBudget(5_000_000)
    inside = 0
    most = 0
    lock = threading.Lock()
    real_hold = budget.hold

    def counting(pixels: int) -> Any:
        cm = real_hold(pixels)

        class Counted:
            def __enter__(self) -> None:
                nonlocal inside, most
                cm.__enter__()
                with lock:
                    inside += 1
                    most = max(most, inside)

            def __exit__(self, *exc: object) -> None:
                nonlocal inside
                with lock:
                    inside -= 1
                cm.__exit__(None, None, None)

        return Counted()

    budget.hold = counting  # type: ignore[method-assign]
    bomb = zero_png(3000, 2000)  # 6 MP: over the whole budget, so one at a time
    threads = [
        threading.Thread(target=decode_photo, args=(bomb, 40_000_000, lambda w, h: 8, budget))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1


def _trickle(port: int, results: list[tuple[float, bytes]], pause_s: float) -> None:
    """POST /classify announcing 100000 bytes of a well-formed upload, then one byte per
    `pause_s` until the server answers."""
    begin = time.monotonic()
    part = (
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n" + part
        )
        sock.settimeout(pause_s)
        try:
            for _ in range(200):
                sock.sendall(b"x")
                try:
                    answer = sock.recv(65536)
                except TimeoutError:
                    continue
                break
            sock.settimeout(5)
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    results.append((time.monotonic() - begin, answer))


def test_a_trickling_upload_gets_408_and_gives_its_slot_back(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server(max_concurrency=2, body_timeout_s=2, body_min_rate=16384)
    results: list[tuple[float, bytes]] = []
    tricklers = [
        threading.Thread(target=_trickle, args=(server.port, results, 0.5)) for _ in range(3)
    ]
    for thread in tricklers:
        thread.start()
    time.sleep(0.5)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        # While the tricklers hold both slots, others are turned away...
        assert client.get("/products").status_code == 503
        for thread in tricklers:
            thread.join(30)
        # ...and once they are cut off, served again.
        assert client.get("/products").status_code == 200
    answered = [answer for _, answer in results]
    assert len(answered) == 3
    cut = [(elapsed, answer) for elapsed, answer in results if b" 408 " in answer.split(b"\r\n")[0]]
    assert len(cut) >= 2, answered  # the third may have been turned away with a 503
    for elapsed, answer in cut:
        assert elapsed < 8, elapsed  # 2 s of grace, then under 16 KB/s: cut at once
        assert b"request body too slow" in answer
        assert b"connection: close" in answer.lower()


def test_a_wrong_key_list_stops_start_up_without_showing_any_key(tmp_path: Path) -> None:
    keys = "s3cr3t-admin-key,lane7-s3cr3t:clasify"
    done = retailklip(
        "serve",
        env={"RETAILKLIP_API_KEYS": keys, "RETAILKLIP_DATA_DIR": str(tmp_path)},
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "RETAILKLIP_API_KEYS" in output and "clasify" in output
    assert "s3cr3t" not in output, output


def test_no_setting_echoes_its_value(tmp_path: Path) -> None:
    """The same for any setting: a database URL carries a password."""
    done = retailklip(
        "migrate",
        env={"RETAILKLIP_SHARD_CAPACITY": "p4ssw0rd", "RETAILKLIP_DATA_DIR": str(tmp_path)},
        timeout=60,
    )
    assert done.returncode == 2
    assert "p4ssw0rd" not in done.stdout + done.stderr


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_serve_speaks_tls_with_the_certificate_it_is_given(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    settings = suite_settings(
        tmp_path / "data", api_keys="tls-key:admin", tls_cert_file=cert, tls_key_file=key
    )
    with LiveServer(env=settings_env(settings), tls_ca=cert).start() as server:
        assert server.url.startswith("https://")
        with httpx.Client(base_url=server.url, verify=server.verify, timeout=30) as client:
            assert client.get("/auth/role", headers={"X-API-Key": "tls-key"}).json() == {
                "role": "admin"
            }
        # The same port refuses plain HTTP: no key ever crosses it in clear.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/auth/role", timeout=5)


def test_tls_needs_both_files(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    done = retailklip(
        "serve", env={"RETAILKLIP_TLS_CERT_FILE": str(cert), "RETAILKLIP_DATA_DIR": str(tmp_path)}
    )
    assert done.returncode == 2
    assert "TLS needs both RETAILKLIP_TLS_CERT_FILE and RETAILKLIP_TLS_KEY_FILE" in done.stderr


def test_a_write_whose_answer_cannot_be_made_leaves_nothing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer is built and encoded inside the write's transaction: when that fails after
    the SQL work, the client gets a 500 and nothing was written (a retry is safe)."""

    def cannot_encode(*args: object) -> object:
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(ProductCreated, "made", cannot_encode)
    monkeypatch.setattr(ImagesAdded, "made", cannot_encode)
    # Answer a 500 as a server would, rather than raise in the test.
    monkeypatch.setattr(client._transport, "raise_server_exceptions", False)
    before = product_count(client)
    answer = client.post(
        "/products", data={"sku": "unanswered", "name": "U"}, files=[("images", jpeg(BANANA))]
    )
    assert (answer.status_code, answer.json()) == (500, {"detail": "internal server error"})
    assert product_count(client) == before
    assert client.get("/products/unanswered").status_code == 404
    held = client.get("/products/fine").json()["image_ids"]
    more = client.post("/products/fine/images", files=[("images", jpeg(QUERY))])
    assert more.status_code == 500
    assert client.get("/products/fine").json()["image_ids"] == held
    monkeypatch.undo()
    retried = client.post(
        "/products", data={"sku": "unanswered", "name": "U"}, files=[("images", jpeg(BANANA))]
    )
    assert retried.status_code == 201
    assert client.delete("/products/unanswered").status_code == 204


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_review_item_is_confirmed_as_one_product_only(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two clerks confirm one kept photo as two products at the same moment: one wins (201),
    the other finds no such item (404), and the photo is a reference of the winner only."""
    root = tmp_path_factory.mktemp(f"confirm-{backend}")
    with (
        backend_database(backend) as url,
        running_server(root, database_url=url, review="all") as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        for sku in ("left", "right"):
            made = http.post(
                "/products", data={"sku": sku, "name": sku}, files=[("images", jpeg(BANANA))]
            )
            assert made.status_code == 201, made.text
        shelf = sorted((GROCERY / "test/Fruit/Banana").glob("*.jpg"))[1:4]
        for photo in shelf:
            http.post("/classify", files={"image": jpeg(photo)})
        assert wait_for(lambda: http.get("/review").json()["total"] == len(shelf), 20)

        def confirm(sku: str, item_id: int, start: threading.Barrier, out: dict[str, int]) -> None:
            start.wait()
            out[sku] = http.post(f"/review/{item_id}/confirm", data={"sku": sku}).status_code

        for item in http.get("/review").json()["items"]:
            start = threading.Barrier(2)
            answers: dict[str, int] = {}
            racers = [
                threading.Thread(target=confirm, args=(sku, item["id"], start, answers))
                for sku in ("left", "right")
            ]
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join(60)
            assert sorted(answers.values()) == [201, 404], answers
        counts = {
            sku: http.get(f"/products/{sku}").json()["image_count"] for sku in ("left", "right")
        }
        # Each product had one image; the three photos went to one product each, never to both.
        assert counts["left"] + counts["right"] == 2 + len(shelf), counts
        assert http.get("/review").json()["total"] == 0
