"""`retailklip serve` in a subprocess (real uvicorn, real HTTP), free ports, waiting.

Used by the end-to-end tests and by the failure drills in bench/, so both start, wait for and
stop a server the same way.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.paths import REPO


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.25) -> bool:
    """Poll until `condition()` holds; for changes another process makes on its own schedule."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The default runtime exports an ONNX graph per model at first start: the suite's servers and the
# drills' share one export (and, with it, start without PyTorch) instead of paying it in every
# fresh data dir.
SHARED_ONNX_DIR = REPO / "runs/test-onnx"


def suite_settings(data_dir: Path, **settings: object) -> dict[str, object]:
    """The settings every test service runs with (a live server or an in-process app),
    plus the test's own: the small CPU model, and one ONNX export for the whole suite."""
    return {
        "data_dir": data_dir,
        "model": "efficientnet-lite0",
        "device": "cpu",
        "onnx_dir": SHARED_ONNX_DIR,
        **settings,
    }


def settings_env(settings: Mapping[str, object]) -> dict[str, str]:
    """Settings as the RETAILKLIP_* environment variables `retailklip serve` reads."""
    return {f"RETAILKLIP_{k.upper()}": str(v) for k, v in settings.items()}


@dataclass
class LiveServer:
    """`retailklip serve` in a subprocess on 127.0.0.1, settings as RETAILKLIP_* variables."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    stop_grace_s: float = 20
    ready_after_s: float = 0.0  # how long the last start took until it answered

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 600, ready: bool = True) -> LiveServer:
        """Wait (model load: slow on a busy machine) until /readyz says ready, or with
        `ready=False` until the app answers at all (a replica waiting for a reindex).
        A server that does not come up in time is killed, and the error carries its log."""
        env = {**os.environ, **self.env, "RETAILKLIP_PORT": str(self.port)}
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        begin = time.monotonic()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # the child holds its own copy
        while time.monotonic() - begin < timeout:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"server exited with {code}: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(f"{self.url}/readyz", timeout=2)
                if answer.status_code == 200 or (not ready and "index for model" in answer.text):
                    self.ready_after_s = time.monotonic() - begin
                    return self
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"server not ready after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL after `stop_grace_s`."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_grace_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a power cut or an OOM kill."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_server(
    log_dir: Path, data_dir: Path, wait_ready: bool = True, **settings: object
) -> LiveServer:
    """A started server with the suite's settings; its log goes to a new file in `log_dir`."""
    env = settings_env(suite_settings(data_dir, **settings))
    server = LiveServer(env=env, log_path=log_dir / f"server-{uuid.uuid4().hex[:6]}.log")
    return server.start(ready=wait_ready)


@contextmanager
def running_server(root: Path, **settings: object) -> Iterator[LiveServer]:
    """`start_server` with its data dir and log under `root`, stopped when the block ends."""
    server = start_server(root, root / "data", **settings)
    try:
        yield server
    finally:
        server.stop()
