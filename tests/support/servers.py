"""`retailklip serve` in a subprocess (real uvicorn, real HTTP), free ports, waiting.

The one harness for live servers: the end-to-end tests and drills (tests/) and the benchmarks
(bench/, which imports this module; nothing under tests/ imports bench/) start, wait for and
stop a server the same way. A server that exits or does not become ready in time raises
`ServerStartError` carrying the tail of its log.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from tests.support.paths import REPO

SERVE = ("-m", "app.cli", "serve", "--host", "127.0.0.1")


class ServerStartError(RuntimeError):
    """A server exited, or did not answer ready in time; the message carries its log tail."""


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
    """`retailklip serve` in a subprocess on 127.0.0.1, settings as RETAILKLIP_* variables.

    `code`: the checkout whose `app` is served (its working directory, and first on its
    PYTHONPATH when it is not this one: a `git worktree` of an older commit, same venv).
    `command`: the Python arguments, `-m app.cli serve` unless another ASGI server is wanted;
    any command works that reads RETAILKLIP_PORT and answers GET /readyz."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None  # None: a temporary file, removed by `stop`
    stop_grace_s: float = 20
    ready_after_s: float = 0.0  # how long the last start took until it answered
    code: Path = REPO
    command: tuple[str, ...] = SERVE
    python: str = sys.executable  # another venv's, to serve from another install
    # The CA that signed the server's certificate when it speaks HTTPS (RETAILKLIP_TLS_*).
    tls_ca: Path | None = None
    _own_log: bool = False

    @property
    def url(self) -> str:
        scheme = "http" if self.tls_ca is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """httpx's `verify` for this server."""
        return True if self.tls_ca is None else ssl.create_default_context(cafile=self.tls_ca)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def describe(self) -> str:
        where = "" if self.code == REPO else f" from {self.code}"
        return f"`python {' '.join(self.command)}`{where} on port {self.port}"

    def start(self, timeout: float = 600, ready: bool = True) -> LiveServer:
        """Wait (model load: slow on a busy machine) until /readyz says ready, or with
        `ready=False` until the app answers at all (a replica waiting for a reindex).
        A server that exits, or does not come up in time (it is killed then), raises
        `ServerStartError` with its log tail; so does an interrupt while waiting (after the
        server is killed)."""
        env = {**os.environ, **self.env, "RETAILKLIP_PORT": str(self.port)}
        if self.code != REPO:
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(self.code), env.get("PYTHONPATH")])
            )
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="server-", suffix=".log")
            os.close(handle)
            self.log_path, self._own_log = Path(name), True
        begin = time.monotonic()
        with open(self.log_path, "ab") as log:  # the child holds its own copy
            self.process = subprocess.Popen(
                [self.python, *self.command],
                cwd=self.code,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        last = "no answer yet"
        try:
            while time.monotonic() - begin < timeout:
                if self.process.poll() is not None:
                    raise ServerStartError(
                        f"{self.describe()} exited with code {self.process.returncode} before "
                        f"it was ready (after {time.monotonic() - begin:.0f} s)"
                        f"{self._tail_note()}"
                    )
                try:
                    answer = httpx.get(f"{self.url}/readyz", timeout=2, verify=self.verify)
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}"
                else:
                    if answer.status_code == 200 or (
                        not ready and "index for model" in answer.text
                    ):
                        self.ready_after_s = time.monotonic() - begin
                        return self
                    last = f"{answer.status_code} {answer.text[:200]}"
                time.sleep(0.2)
        except BaseException:
            self.kill()
            raise
        self.kill()
        raise ServerStartError(
            f"{self.describe()} not ready after {timeout:.0f} s (last /readyz: {last})"
            f"{self._tail_note()}"
        )

    def _tail_note(self) -> str:
        tail = self.log_tail()
        return f"\n--- last lines of {self.log_path} ---\n{tail}" if tail else " (empty log)"

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
        if self._own_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path, self._own_log = None, False

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a power cut or an OOM kill."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def rss_mb(self) -> float:
        """The process's resident memory now (VmRSS)."""
        return self._status_mb("VmRSS:")

    def peak_rss_mb(self) -> float:
        """VmHWM: the kernel's high-water mark of this process's resident memory."""
        return self._status_mb("VmHWM:")

    def _status_mb(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {key} in /proc/{self.pid}/status")


def quiet_server(
    settings: Mapping[str, object],
    log_path: Path,
    code: Path = REPO,
    command: tuple[str, ...] = SERVE,
) -> LiveServer:
    """A server for the drills and bench/: the settings as given (not the suite's small model),
    logging at warning level (they read their own numbers, not the access log), the suite's
    ONNX export unless the settings name another."""
    env = settings_env({"log_level": "warning", "onnx_dir": SHARED_ONNX_DIR, **settings})
    return LiveServer(env=env, log_path=log_path, stop_grace_s=30, code=code, command=command)


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
