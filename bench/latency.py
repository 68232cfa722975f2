"""/classify latency and throughput against the encoder alone, measured in the same run.

    nice -n 10 .venv/bin/python bench/latency.py [--model M] [--runtime auto|torch|onnx|onnx-int8]
        [--rounds 4] [--per-round 40] [--stages]

Starts `retailklip serve` (fresh SQLite data dir, default model unless --model), registers the 81
iconic Grocery Store catalogue images through `POST /products` (with the model's degraded views),
then, in interleaved rounds so that machine noise hits both sides alike:
- encoder alone, in this process: decode + preprocess + forward of one photo (p50), and of 8
  photos as one batch (photos/s);
- `POST /classify` at concurrency 1 (p50; alternating photo by photo with the encoder alone) and
  at concurrency 8 (requests/s).
The client is a keep-alive `http.client` connection per thread with the multipart body built
before the clock starts (`--client httpx` measures through httpx, which spends ~1.4 ms of this
machine's CPU per request).
It prints both ratios: classify c=1 p50 / encoder p50, and classify c=8 throughput / encoder
batch-8 throughput.

`--stages` starts the server with timers around each stage of the request path (multipart
parsing, decode, micro-batch queue, forward, FAISS search, SQL lookup, thread hops) and prints
the median per stage at concurrency 1: where the time between the encoder and the answer goes.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from service_bench import DATA, classes, queries, register_catalogue  # noqa: E402

STAGES_PATH = "/_bench/stages"
KEEP_ALIVE_S = 2.0  # reuse a connection idle at most this long (the server closes at 5 s)


def start_server(
    data_dir: Path, port: int, env: dict[str, str], instrumented: bool
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **env,
        "RETAILKLIP_DATA_DIR": str(data_dir),
        "RETAILKLIP_PORT": str(port),
        "RETAILKLIP_LOG_LEVEL": "warning",
        "PYTHONPATH": str(REPO),
    }
    command = (
        [sys.executable, __file__, "--serve-instrumented"]
        if instrumented
        else [sys.executable, "-m", "app.cli", "serve"]
    )
    process = subprocess.Popen(command, cwd=REPO, env=env)
    for _ in range(1200):
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("server did not become ready")


# ----------------------------------------------------------------------------- encoder alone


class EncoderAlone:
    """The service's own decode + preprocess + forward, in this process, no HTTP, no queue."""

    def __init__(self, model: str, runtime: str, data_dir: Path, onnx_dir: Path) -> None:
        from app.encoder.loading import load_service_encoder
        from app.encoder.preprocess import decode_image_with_format, eval_pixels
        from app.settings import Settings

        settings = Settings(
            model=model, runtime=runtime, data_dir=data_dir, onnx_dir=onnx_dir, device="cpu"
        )
        self.encoder = load_service_encoder(settings)
        self.decode = decode_image_with_format
        self.pixels = eval_pixels
        self.max_pixels = settings.max_image_pixels
        self.stages: dict[str, list[float]] = defaultdict(list)  # of `one`, for --stages

    def one(self, data: bytes) -> float:
        begin = time.perf_counter()
        image, _ = self.decode(data, self.max_pixels)
        decoded = time.perf_counter()
        pixels = self.pixels(image, self.encoder.preprocess)[None]
        preprocessed = time.perf_counter()
        self.encoder.embed_pixels(pixels)
        end = time.perf_counter()
        for name, seconds in (
            ("decode", decoded - begin),
            ("preprocess", preprocessed - decoded),
            ("forward", end - preprocessed),
        ):
            self.stages[name].append(seconds)
        return end - begin

    def batch(self, blobs: list[bytes]) -> float:
        import numpy as np

        begin = time.perf_counter()
        pre = self.encoder.preprocess
        pixels = [self.pixels(self.decode(b, self.max_pixels)[0], pre) for b in blobs]
        self.encoder.embed_pixels(np.stack(pixels))
        return time.perf_counter() - begin


class LeanClient:
    """POST /classify over one keep-alive `http.client` connection per thread, the multipart body
    built before the clock starts: what a client written for throughput does. The bench's client
    shares the server's two cores; httpx spends ~1.4 ms of Python per request on building and
    parsing (`--client httpx` measures with it)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()
        # Worker threads that live as long as the client, so each keeps its connection open.
        self.pools: dict[int, ThreadPoolExecutor] = {}

    def pool(self, concurrency: int) -> ThreadPoolExecutor:
        return self.pools.setdefault(concurrency, ThreadPoolExecutor(concurrency))

    def _connection(self) -> http.client.HTTPConnection:
        """This thread's connection, opened anew when it sat idle long enough for the server to
        close it (uvicorn's keep-alive timeout is 5 s), before any clock starts."""
        connection: http.client.HTTPConnection | None = getattr(self.local, "connection", None)
        idle = time.monotonic() - getattr(self.local, "used", 0.0)
        if connection is not None and idle > KEEP_ALIVE_S:
            connection.close()
            connection = None
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port)
            connection.connect()
            self.local.connection = connection
        return connection

    @staticmethod
    def body(data: bytes) -> tuple[bytes, str]:
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="photo.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        )
        body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
        return body, f"multipart/form-data; boundary={boundary}"

    def classify(self, prepared: tuple[bytes, str]) -> float:
        body, content_type = prepared
        connection = self._connection()
        begin = time.perf_counter()
        connection.request("POST", "/classify", body, {"Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - begin
        self.local.used = time.monotonic()
        if response.status != 200:
            raise RuntimeError(f"/classify answered {response.status}")
        return elapsed


def classify_run(
    client: httpx.Client | LeanClient, blobs: list[bytes], concurrency: int
) -> tuple[list[float], float]:
    if isinstance(client, LeanClient):
        prepared = [client.body(data) for data in blobs]
        one: Callable[[Any], float] = client.classify
    else:
        prepared = blobs

        def one(data: bytes) -> float:
            begin = time.perf_counter()
            response = client.post("/classify", files={"image": ("photo.jpg", data)})
            response.raise_for_status()
            return time.perf_counter() - begin

    if isinstance(client, LeanClient):
        begin = time.perf_counter()
        times = list(client.pool(concurrency).map(one, prepared))
        return times, time.perf_counter() - begin
    begin = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        times = list(pool.map(one, prepared))
    return times, time.perf_counter() - begin


def p50_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


# ----------------------------------------------------------------------------- stage timers


def serve_instrumented() -> None:
    """`retailklip serve` with timers around every stage of POST /classify (concurrency 1)."""
    import uvicorn
    from fastapi.responses import JSONResponse

    import app.api.classify as classify_module
    import app.runtime.inference as inference_module
    from app.catalogue.products import Catalogue
    from app.encoder.onnx_graph import GraphEncoder
    from app.encoder.torch_encoder import Encoder
    from app.index.shards import ShardSet
    from app.main import create_app
    from app.runtime.inference import Inference
    from app.settings import Settings

    records: dict[str, list[float]] = defaultdict(list)

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            begin = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                records[name].append(time.perf_counter() - begin)

        return wrapper

    def timed_async(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            begin = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                records[name].append(time.perf_counter() - begin)

        return wrapper

    Inference._decode = timed("decode+preprocess (in pool)", Inference._decode)
    # The one-hop path (a lone request) decodes and preprocesses on the model thread, not in
    # `_decode`: time its two steps where both paths call them.
    inference_module.decode_image_with_format = timed(
        "decode (either path)", inference_module.decode_image_with_format
    )
    Inference._pixels = timed("preprocess (either path)", Inference._pixels)
    Inference.decode = timed_async("decode await (incl. hop)", Inference.decode)
    Inference.embed = timed_async("embed await (queue+forward)", Inference.embed)
    if hasattr(Inference, "classify_one"):
        Inference.classify_one = timed_async(
            "classify_one await (all stages, hops incl.)", Inference.classify_one
        )
    Encoder.embed_pixels = timed("forward (in model thread)", Encoder.embed_pixels)
    GraphEncoder.embed_pixels = timed("forward (in model thread)", GraphEncoder.embed_pixels)
    ShardSet.search = timed("faiss search", ShardSet.search)
    Catalogue.matches_for = timed("SQL matches_for", Catalogue.matches_for)
    classify_module.classify_vectors = timed(
        "classify_vectors (in thread)", classify_module.classify_vectors
    )
    if hasattr(classify_module, "run_in_threadpool"):
        classify_module.run_in_threadpool = timed_async(
            "classify_vectors await (incl. hop)", classify_module.run_in_threadpool
        )
    classify_module.read_all = timed_async("read upload", classify_module.read_all)
    endpoint = classify_module.classify
    endpoint_marks: list[float] = []

    settings = Settings()
    app = create_app(settings)

    for route in app.router.routes:
        if getattr(route, "path", None) == "/classify":
            original = route.dependant.call  # type: ignore[attr-defined]

            async def traced(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                endpoint_marks.append(time.perf_counter())
                begin = time.perf_counter()
                try:
                    return await _original(*args, **kwargs)
                finally:
                    records["endpoint body"].append(time.perf_counter() - begin)

            route.dependant.call = traced  # type: ignore[attr-defined]
    del endpoint

    class Outer:
        """Outermost ASGI wrapper: time in the app per request, and until the endpoint starts."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != "/classify":
                await self.inner(scope, receive, send)
                return
            begin = time.perf_counter()
            endpoint_marks.clear()
            await self.inner(scope, receive, send)
            records["app total (ASGI in -> out)"].append(time.perf_counter() - begin)
            if endpoint_marks:
                records["before endpoint (middleware, multipart, deps)"].append(
                    endpoint_marks[0] - begin
                )

    @app.get(STAGES_PATH, include_in_schema=False)
    async def stages(reset: bool = False) -> JSONResponse:
        out = {k: list(v) for k, v in records.items()}
        if reset:
            records.clear()
        return JSONResponse(out)

    uvicorn.run(
        Outer(app),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        limit_concurrency=settings.max_connections,
    )


STAGE_ORDER = (
    "app total (ASGI in -> out)",
    "before endpoint (middleware, multipart, deps)",
    "endpoint body",
    "read upload",
    "multipart parse (fast path)",
    "classify_image await (fast path)",
    "decode await (incl. hop)",
    "decode+preprocess (in pool)",
    "classify_one await (all stages, hops incl.)",
    "decode (either path)",
    "preprocess (either path)",
    "embed await (queue+forward)",
    "forward (in model thread)",
    "classify_vectors await (incl. hop)",
    "classify_vectors (in thread)",
    "faiss search",
    "SQL matches_for",
)


def print_stages(
    stages: dict[str, list[float]], client_p50: float, client: str, alone: dict[str, list[float]]
) -> None:
    print("\n/classify at concurrency 1, median per stage (server-side timers)")
    print("| stage | p50 ms |\n| --- | --- |")
    print(f"| client round trip ({client}) | {client_p50:.2f} |")
    for name in STAGE_ORDER:
        if stages.get(name):
            print(f"| {name} | {p50_ms(stages[name]):.2f} |")
    med = {k: p50_ms(v) for k, v in stages.items() if v}
    if "embed await (queue+forward)" in med and "forward (in model thread)" in med:
        gap = med["embed await (queue+forward)"] - med["forward (in model thread)"]
        print(f"| = queue / batch wait / hops around the forward | {gap:.2f} |")
    if "decode await (incl. hop)" in med and "decode+preprocess (in pool)" in med:
        gap = med["decode await (incl. hop)"] - med["decode+preprocess (in pool)"]
        print(f"| = thread hop around decode | {gap:.2f} |")
    # Decode + preprocess as the request path ran them: in the pool, or on the one-hop path.
    decoding = med.get("decode+preprocess (in pool)") or (
        med.get("decode (either path)", 0.0) + med.get("preprocess (either path)", 0.0)
    )
    if "forward (in model thread)" in med:
        inside = decoding + med["forward (in model thread)"]
        print(f"| = overhead beyond the server's decode + forward | {client_p50 - inside:.2f} |")
        # The in-process encoder of this bench and the server's share a CPU other work also
        # uses; against the server's own encoder stages the ratio is less sensitive to that.
    if "app total (ASGI in -> out)" in med:
        print(
            f"| = outside the app (HTTP, client, uvicorn) | "
            f"{client_p50 - med['app total (ASGI in -> out)']:.2f} |"
        )
    if "forward (in model thread)" in med:
        print(
            f"\nclassify c=1 p50 / the server's own decode + forward p50: "
            f"{client_p50 / inside:.2f}x"
        )
    print("\nthe same steps, encoder alone (same photos, alternating) / in the server")
    print("| step | alone p50 ms | server p50 ms |\n| --- | --- | --- |")
    for step, server_name in (
        ("decode", "decode (either path)"),
        ("preprocess", "preprocess (either path)"),
        ("forward", "forward (in model thread)"),
    ):
        if alone.get(step) and server_name in med:
            print(f"| {step} | {p50_ms(alone[step]):.2f} | {med[server_name]:.2f} |")


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="retailklip-lite0-shelf")
    parser.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx", "onnx-int8"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=40, help="photos per measurement")
    parser.add_argument("--port", type=int, default=8797)
    parser.add_argument("--stages", action="store_true", help="per-stage server timers")
    parser.add_argument(
        "--client", default="lean", choices=("lean", "httpx"), help="the HTTP client measuring"
    )
    parser.add_argument("--batch-wait-ms", type=float, help="override RETAILKLIP_BATCH_WAIT_MS")
    parser.add_argument("--serve-instrumented", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_instrumented:
        serve_instrumented()
        return 0

    catalogue = classes(args.data)
    photos = [p for p, _ in queries(args.data, "test")]
    step = max(1, len(photos) // (args.rounds * args.per_round))
    blobs = [p.read_bytes() for p in photos[::step][: args.rounds * args.per_round]]
    env = {"RETAILKLIP_MODEL": args.model, "RETAILKLIP_RUNTIME": args.runtime}
    if args.batch_wait_ms is not None:
        env["RETAILKLIP_BATCH_WAIT_MS"] = str(args.batch_wait_ms)
    results: dict[str, list[float]] = defaultdict(list)
    walls: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    with tempfile.TemporaryDirectory() as tmp:
        # Both sides serve as a replica does after its first start: from the ONNX graph cache
        # (the first load here exports it), without PyTorch in the server.
        onnx_dir = Path(tmp) / "onnx"
        # The first load exports the graph; the one measured loads it from the cache.
        EncoderAlone(args.model, args.runtime, Path(tmp) / "alone", onnx_dir)
        alone = EncoderAlone(args.model, args.runtime, Path(tmp) / "alone", onnx_dir)
        server = start_server(
            Path(tmp) / "server",
            args.port,
            {**env, "RETAILKLIP_ONNX_DIR": str(onnx_dir)},
            args.stages,
        )
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=120)
            ready = client.get("/readyz").json()
            register_catalogue(client, catalogue)
            measuring = client if args.client == "httpx" else LeanClient(args.port)
            for data in blobs[:16]:  # warm-up both sides
                alone.one(data)
            classify_run(measuring, blobs[:16], 1)
            classify_run(measuring, blobs[:16], 8)
            stages: dict[str, list[float]] = defaultdict(list)
            alone.stages.clear()  # not the warm-up
            for r in tqdm(range(args.rounds), desc="rounds"):
                chunk = blobs[r * args.per_round : (r + 1) * args.per_round]
                if args.stages:
                    client.get(STAGES_PATH, params={"reset": True})
                # Concurrency 1 alternates photo by photo, so that the machine's drift (this
                # host's speed moves by 30% from minute to minute) hits both sides alike.
                for data in chunk:
                    results["encoder b1"].append(alone.one(data))
                    results["classify c1"] += classify_run(measuring, [data], 1)[0]
                if args.stages:  # concurrency 1 only: stages of one request do not overlap
                    for name, values in client.get(STAGES_PATH).json().items():
                        stages[name] += values
                for i in range(0, len(chunk) - 7, 8):
                    walls["encoder b8"] += alone.batch(chunk[i : i + 8])
                    counts["encoder b8"] += 8
                _, wall = classify_run(measuring, chunk, 8)
                walls["classify c8"] += wall
                counts["classify c8"] += len(chunk)
        finally:
            server.terminate()
            server.wait(30)
    enc_p50 = p50_ms(results["encoder b1"])
    cls_p50 = p50_ms(results["classify c1"])
    enc_tp = counts["encoder b8"] / walls["encoder b8"]
    cls_tp = counts["classify c8"] / walls["classify c8"]
    print(
        f"\nmodel {ready['model']} runtime {ready.get('runtime', 'torch')}, "
        f"{len(catalogue)} products registered, {args.rounds} interleaved rounds of "
        f"{args.per_round} photos, client {args.client}; encoder alone: "
        f"{type(alone.encoder).__name__}"
    )
    print("| measurement | p50 ms | throughput /s |\n| --- | --- | --- |")
    print(f"| encoder alone, 1 photo | {enc_p50:.1f} | {1000 / enc_p50:.1f} |")
    print(f"| POST /classify, concurrency 1 | {cls_p50:.1f} | |")
    print(f"| encoder alone, batch of 8 | | {enc_tp:.1f} |")
    print(f"| POST /classify, concurrency 8 | | {cls_tp:.1f} |")
    print(f"\nclassify c=1 p50 / encoder p50: {cls_p50 / enc_p50:.2f}x (target <= 1.2x)")
    print(f"classify c=8 throughput / encoder batch-8 throughput: {cls_tp / enc_tp:.2f}x")
    if args.stages:
        print_stages(stages, cls_p50, args.client, alone.stages)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
