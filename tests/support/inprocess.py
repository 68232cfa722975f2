"""The app in the test process: `TestClient(create_app(settings))`, no uvicorn, no HTTP socket.

For tests that check answers (error tables: a status, a `{"detail": ...}`, nothing written);
the lifespan still builds everything (database, model, shards), so the app is the real one.
End-to-end and topology tests keep the real server (`tests.support.servers`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.support.servers import suite_settings


@contextmanager
def in_process_client(
    data_dir: Path, headers: dict[str, str] | None = None, **settings: object
) -> Iterator[TestClient]:
    """A started app (lifespan entered) with the suite's settings and the test's own."""
    app = create_app(Settings(**suite_settings(data_dir, **settings)))  # type: ignore[arg-type]
    with TestClient(app, headers=headers) as client:
        yield client
