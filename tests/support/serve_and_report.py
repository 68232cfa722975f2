"""`retailklip serve`, then, once it has shut down, the PyTorch modules this process imported
written to the file RETAILKLIP_TEST_MODULES_FILE names (tests/e2e/test_serving_install.py).

uvicorn re-raises the SIGTERM it shut down on once it is done, so the report is written by a
handler of that signal, installed before uvicorn starts (it restores it before re-raising)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from app.cli.main import main

FAMILY = ("torch", "torchvision", "open_clip", "timm", "onnx")


def report(*_: object) -> None:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in FAMILY)
    Path(os.environ["RETAILKLIP_TEST_MODULES_FILE"]).write_text(json.dumps(loaded))


def on_term(signum: int, frame: FrameType | None) -> None:
    report()
    raise SystemExit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_term)
    code = main(["serve", "--host", "127.0.0.1"])
    report()
    raise SystemExit(code)
