"""bench/image_check.sh and the Dockerfiles agree (fast: nothing is built or run).

The script builds docker/Dockerfile.{cpu,cuda} with build arguments and checks the images it
gets; it is too slow for CI (see docs/DEPLOYMENT.md). These tests catch the drift that would
only show when somebody next runs it: a build argument the Dockerfiles no longer declare, a file
it looks for that no longer exists, a Dockerfile default it parses that has changed shape.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.dockerfiles import DOCKERFILES, FLAVOURS, instructions
from tests.support.paths import GROCERY, REPO

ROOT = REPO
SCRIPT = ROOT / "bench" / "image_check.sh"


def script() -> str:
    assert SCRIPT.is_file(), "bench/image_check.sh is missing"
    return SCRIPT.read_text()


def arg_names(rest: str) -> list[str]:
    return [part.split("=", 1)[0] for part in rest.split()]


def build_args() -> set[str]:
    names = set(re.findall(r"--build-arg \"?([A-Za-z_][A-Za-z0-9_]*)=", script()))
    assert names, "the script passes no --build-arg at all"
    return names


def test_script_is_valid_bash() -> None:
    text = script()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_script_passes_shellcheck() -> None:
    # .ci/run installs shellcheck; a missing one fails here rather than hiding the check.
    assert shutil.which("shellcheck"), "shellcheck not installed (apt-get install shellcheck)"
    proc = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_script_builds_the_dockerfiles_of_this_repository() -> None:
    text = script()
    assert "$ROOT/docker/Dockerfile.$flavour" in text
    assert "[cpu|cuda|all]" in text, "the usage line names the flavours"
    for path in DOCKERFILES.values():
        assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    assert (ROOT / ".dockerignore").is_file(), "the build context relies on .dockerignore"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_build_arg_the_script_passes_is_declared(flavour: str) -> None:
    lines = instructions(DOCKERFILES[flavour])
    declared = {name for word, rest in lines if word == "ARG" for name in arg_names(rest)}
    missing = build_args() - declared
    assert not missing, f"Dockerfile.{flavour} declares no ARG {sorted(missing)}"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_build_args_are_in_scope_where_they_are_used(flavour: str) -> None:
    lines = instructions(DOCKERFILES[flavour])
    first_from = next(i for i, (word, _) in enumerate(lines) if word == "FROM")
    # PYTHON_IMAGE picks the base image, so it must be a global ARG used by every FROM.
    global_args = {n for word, rest in lines[:first_from] if word == "ARG" for n in arg_names(rest)}
    assert "PYTHON_IMAGE" in global_args
    froms = [rest for word, rest in lines if word == "FROM"]
    assert all(rest.startswith("${PYTHON_IMAGE}") for rest in froms), froms
    # The torch and pip arguments are declared in the builder stage before its first pip call
    # (an ARG is visible to RUN only after its declaration, within its stage).
    second_from = next(i for i, (word, _) in enumerate(lines) if word == "FROM" and i > first_from)
    builder = lines[first_from:second_from]
    first_pip = next(
        i for i, (word, rest) in enumerate(builder) if word == "RUN" and "pip " in rest
    )
    declared_early = {
        n for word, rest in builder[:first_pip] if word == "ARG" for n in arg_names(rest)
    }
    missing = (build_args() - {"PYTHON_IMAGE"}) - declared_early
    assert not missing, f"declared too late or outside the builder stage: {sorted(missing)}"
    torch_runs = [rest for word, rest in builder if word == "RUN" and '"torch' in rest]
    assert len(torch_runs) == 1 and "TORCH_INDEX_URL" in torch_runs[0]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_default_torch_index_the_script_probes_is_there(flavour: str) -> None:
    # The script reads the default with: sed -n 's/^ARG TORCH_INDEX_URL=//p'
    assert "s/^ARG TORCH_INDEX_URL=//p" in script()
    defaults = re.findall(r"^ARG TORCH_INDEX_URL=(\S*)$", DOCKERFILES[flavour].read_text(), re.M)
    assert len(defaults) == 1 and defaults[0].startswith("https://"), defaults


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_image_config_the_script_relies_on(flavour: str) -> None:
    lines = instructions(DOCKERFILES[flavour])
    last_from = max(i for i, (word, _) in enumerate(lines) if word == "FROM")
    runtime = lines[last_from:]
    users = [rest for word, rest in runtime if word == "USER"]
    # The script compares the server's uid with USER, so USER must be a numeric uid[:gid].
    assert users and re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1]), users
    cmd = next(rest for word, rest in reversed(runtime) if word == "CMD")
    assert '"--host"' in cmd and '"--port"' in cmd, "the script swaps --host/--port in CMD"
    healthcheck = next(rest for word, rest in runtime if word == "HEALTHCHECK")
    assert "RETAILKLIP_PORT" in healthcheck, "the script runs HEALTHCHECK with RETAILKLIP_PORT set"
    assert any(word == "VOLUME" and "/data" in rest for word, rest in runtime)


def test_file_names_the_content_check_looks_for_exist_in_the_repository() -> None:
    # A name that no longer exists would make the "no test/bench/docs files" check vacuous.
    names = re.findall(r"-name ([A-Za-z0-9_.-]+\.(?:py|sh|md|yml|cfg))\b", script())
    assert names
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    tracked = {Path(f).name for f in files}
    missing = [name for name in names if name not in tracked]
    assert not missing, missing


def test_photos_the_script_uses_exist() -> None:
    text = script()
    paths = re.findall(r"^[A-Z_]+=\$(GROCERY|ICONIC)(/\S+\.jpg)$", text, re.M)
    assert len(paths) == 4, paths
    assert GROCERY.is_dir(), f"grocery-store data set not found at {GROCERY}"
    bases = {"GROCERY": GROCERY, "ICONIC": GROCERY / "iconic-images-and-descriptions"}
    for base, rel in paths:
        assert (bases[base] / rel.lstrip("/")).is_file(), f"${base}{rel}"


def test_docs_point_at_the_script_and_ci_does_not_run_it() -> None:
    assert "bench/image_check.sh" in (ROOT / "docs" / "DEPLOYMENT.md").read_text()
    assert "bench/image_check.sh" in (ROOT / "README.md").read_text()
    ci = ROOT / ".ci" / "run"
    if ci.is_file():
        assert "image_check" not in ci.read_text(), "too slow for CI"
