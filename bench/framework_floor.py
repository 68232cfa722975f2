"""The framework floor of bench/latency.py: what FastAPI and uvicorn cost per request before any
of the service's own work.

A bare FastAPI app with one route, `POST /classify`, that reads one multipart image upload and
answers a small JSON (and `GET /readyz`, so the harness can wait for it), served by uvicorn with
the very keyword arguments `retailklip serve` passes to `uvicorn.run` (workers, loop, http,
limits, log level: read by running the command itself with `uvicorn.run` replaced by a recorder,
so the floor cannot drift from the service's server settings). Settings come from the same
RETAILKLIP_* variables.

    python -m bench.framework_floor [--host H] [--port P]
"""

from __future__ import annotations

import sys
import types
from typing import Annotated, Any
from unittest import mock

from fastapi import FastAPI, File, UploadFile


def create_floor_app() -> FastAPI:
    app = FastAPI(title="framework floor")

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready", "model": "framework-floor", "runtime": "none"}

    @app.post("/classify")
    async def classify(image: Annotated[UploadFile, File()]) -> dict[str, object]:
        data = await image.read()
        return {"matches": [], "unknown": True, "bytes": len(data), "model": "framework-floor"}

    return app


def serve_arguments(argv: list[str]) -> dict[str, Any]:
    """The keyword arguments `retailklip serve ARGV` hands to `uvicorn.run` (its app apart),
    with RETAILKLIP_* settings from the environment. The service's app module is stood in for
    while the command runs: only the command line and the settings are needed, not an app
    (nor an importable one)."""
    from app.cli.main import main as retailklip

    recorded: list[dict[str, Any]] = []

    def record(app: object, **kwargs: Any) -> None:
        recorded.append(kwargs)

    stand_in = types.ModuleType("app.main")
    stand_in.create_app = lambda settings=None: None  # type: ignore[attr-defined]
    with mock.patch("uvicorn.run", record), mock.patch.dict(sys.modules, {"app.main": stand_in}):
        retailklip(["serve", *argv])
    if len(recorded) != 1:
        raise RuntimeError(
            f"`retailklip serve` called uvicorn.run {len(recorded)} times (expected once): "
            "the framework floor cannot copy its server settings"
        )
    return recorded[0]


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    uvicorn.run(create_floor_app(), **serve_arguments(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
