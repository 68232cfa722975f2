"""The stalled-database drill (tests/support/drills/stall.py) on this checkout and, beside it,
on an older commit: what /classify latency does while PostgreSQL holds the tables that name
search hits, and how many forward passes still run.

    .venv/bin/python -m bench.stalled_database [--baseline 050b934] [--stall-s 5] [--clients 6]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from tests.support.drills import stall
from tests.support.paths import REPO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None, help="an older commit to run beside")
    parser.add_argument("--stall-s", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--model", default="retailklip-lite0-shelf")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stall-bench-") as tmp:
        codes = [("working tree", REPO)]
        if args.baseline:
            tree = Path(tmp) / "baseline"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(tree), args.baseline],
                cwd=REPO,
                check=True,
            )
            codes.insert(0, (args.baseline, tree))
        try:
            for label, code in codes:
                report = stall.run(args.stall_s, args.clients, args.model, code=code)
                print(f"\n## {label}\n{stall.summary(report)}")
                if report.errors:
                    print("errors:", report.errors[:5])
        finally:
            for _, code in codes[:-1]:
                subprocess.run(["git", "worktree", "remove", "--force", str(code)], cwd=REPO)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
