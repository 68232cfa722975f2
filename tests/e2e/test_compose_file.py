"""Deployment files: docker-compose.yml (+ the CPU override), the Dockerfiles and .dockerignore.

No Docker engine runs in CI, so images are never built here. Instead the compose files are
validated against the Compose Specification JSON Schema (a copy in ../shared/schemas) and the
properties the deployment relies on are asserted one by one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.dockerfiles import DOCKERFILES, instructions
from tests.support.paths import REPO, SHARED

ROOT = REPO
SCHEMA = SHARED / "schemas" / "compose-spec.json"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
SERVE_CMD = ["retailklip", "serve", "--host", "0.0.0.0", "--port", "8000"]
SECRET_WORDS = ("PASSWORD", "API_KEY", "SECRET", "TOKEN")


# --------------------------------------------------------------------------------------------
# YAML loading with Compose's merge tags (`!reset` removes a value inherited from another file)
# --------------------------------------------------------------------------------------------


class _Reset:
    def __repr__(self) -> str:
        return "!reset"


RESET = _Reset()


class ComposeLoader(yaml.SafeLoader):
    pass


ComposeLoader.add_constructor("!reset", lambda loader, node: RESET)


def _override(loader: ComposeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


ComposeLoader.add_constructor("!override", _override)


def load(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    data = yaml.load(path.read_text(), Loader=ComposeLoader)
    assert isinstance(data, dict)
    return data


def without_resets(node: Any) -> Any:
    """The tree as Compose validates it: keys tagged !reset are gone."""
    if isinstance(node, dict):
        return {k: without_resets(v) for k, v in node.items() if v is not RESET}
    if isinstance(node, list):
        return [without_resets(v) for v in node if v is not RESET]
    return node


REPLACED_SEQUENCES = {"command", "entrypoint", "test"}


def merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's multi-file merge, as far as these files use it: mappings merge key by key,
    sequences append (command, entrypoint and healthcheck test are replaced), !reset deletes,
    scalars in the override win."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, value in override.items():
            if value is RESET:
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], value, k)
            else:
                out[k] = without_resets(value)
        return out
    if isinstance(base, list) and isinstance(override, list) and key not in REPLACED_SEQUENCES:
        return base + without_resets(override)
    return without_resets(override)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def cpu_services(compose: dict[str, Any]) -> dict[str, Any]:
    return merge(compose, load(COMPOSE_CPU))["services"]


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service.get("healthcheck", {}).get("test")
    assert test, "no healthcheck test"
    return test if isinstance(test, str) else " ".join(str(part) for part in test)


def volume_parts(spec: Any) -> list[str]:
    """Short volume syntax SOURCE:TARGET[:MODE], split on colons outside ${...}."""
    return re.split(r":(?![^{]*\})", str(spec))


def env_of(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


# --------------------------------------------------------------------------------------------
# Schema validation
# --------------------------------------------------------------------------------------------


def test_compose_schema_is_present() -> None:
    assert SCHEMA.is_file(), (
        f"Compose Specification schema not found at {SCHEMA}: the repository must sit next to "
        "a copy of shared/ (shared/schemas/compose-spec.json)"
    )


def test_compose_file_validates_with_check_jsonschema_cli() -> None:
    assert SCHEMA.is_file(), f"schema missing: {SCHEMA}"
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--schemafile", str(SCHEMA), str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_CPU], ids=lambda p: p.name)
def test_compose_files_validate_against_schema(path: Path) -> None:
    # check-jsonschema's YAML loader does not know Compose's !reset tag, hence this second path
    # for the override (and, for symmetry, the main file).
    assert SCHEMA.is_file(), f"schema missing: {SCHEMA}"
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(without_resets(load(path)))
    ]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_CPU], ids=lambda p: p.name)
def test_interpolations_are_well_formed(path: Path) -> None:
    """Every `$` is `$$` (a literal) or `${NAME}`, `${NAME:-default}`, `${NAME:?message}`..."""
    text = path.read_text()
    good = re.compile(r"\$\$|\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[-?+])[^}]*)?\}")
    stray = [m.start() for m in re.finditer(r"\$", good.sub("", text))]
    assert not stray, f"malformed $ interpolation in {path.name}"


# --------------------------------------------------------------------------------------------
# Structure of docker-compose.yml
# --------------------------------------------------------------------------------------------


def test_services_present(services: dict[str, Any]) -> None:
    assert {"postgres", "migrate", "api"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")


def test_api_waits_for_healthy_postgres_and_finished_migration(services: dict[str, Any]) -> None:
    deps = services["api"]["depends_on"]
    assert deps["postgres"]["condition"] == "service_healthy"
    assert deps["migrate"]["condition"] == "service_completed_successfully"


def test_migrate_is_one_shot_on_the_api_image(services: dict[str, Any]) -> None:
    migrate, api = services["migrate"], services["api"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    command = migrate["command"]
    command = command.split() if isinstance(command, str) else command
    assert command == ["retailklip", "migrate"]
    assert migrate.get("restart", "no") == "no"
    assert migrate["image"] == api["image"]
    assert migrate["build"] == api["build"]


def test_api_serves_on_8000_and_leaves_migrations_to_migrate(services: dict[str, Any]) -> None:
    api = services["api"]
    command = api.get("command", SERVE_CMD)
    assert (command.split() if isinstance(command, str) else command) == SERVE_CMD
    env = env_of(api)
    assert str(env["RETAILKLIP_AUTO_MIGRATE"]).lower() == "false"
    assert env["RETAILKLIP_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["RETAILKLIP_DATABASE_URL"]


def test_api_reserves_a_gpu(services: dict[str, Any]) -> None:
    devices = services["api"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


def test_api_is_scalable(services: dict[str, Any]) -> None:
    api = services["api"]
    assert "container_name" not in api, "a fixed container_name breaks --scale"
    assert "ports" not in api, "a published host port breaks --scale; publish on the lb"
    assert "hostname" not in api


def test_a_load_balancer_publishes_one_port_in_front_of_api(services: dict[str, Any]) -> None:
    balancers = [
        (name, svc)
        for name, svc in services.items()
        if name != "api" and svc.get("ports") and "api" in svc.get("depends_on", {})
    ]
    assert len(balancers) == 1, "expected one load balancer service depending on api"
    name, lb = balancers[0]
    configs = [
        ROOT / volume_parts(v)[0]
        for v in lb.get("volumes", [])
        if isinstance(v, str) and v.startswith("./")
    ]
    assert configs, f"{name} mounts no config file from the repository"
    for config in configs:
        assert config.is_file(), f"{config.relative_to(ROOT)} is missing"
        text = config.read_text()
        assert "api:8000" in text, f"{config.name} does not point at the api service"
        assert "/readyz" in text, f"{config.name} does not health-check replicas on /readyz"


def test_healthchecks(services: dict[str, Any]) -> None:
    assert "pg_isready" in healthcheck_text(services["postgres"])
    assert "/readyz" in healthcheck_text(services["api"])
    assert services["api"]["healthcheck"].get("start_period"), "model loading needs a grace time"


def test_required_secrets_come_from_the_environment(services: dict[str, Any]) -> None:
    required = re.compile(r"^\$\{(?P<name>[A-Z_]+):\?[^}]+\}$")
    password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert required.match(password), password
    assert required.match(env_of(services["api"])["RETAILKLIP_API_KEYS"])
    for name in ("api", "migrate"):
        assert "${POSTGRES_PASSWORD:?" in env_of(services[name])["RETAILKLIP_DATABASE_URL"]
    # No literal secret anywhere: every secret-looking variable is an interpolation.
    for service_name, service in services.items():
        for key, value in env_of(service).items():
            if any(word in key for word in SECRET_WORDS) and value is not None:
                assert str(value).startswith("${"), f"{service_name}.{key} holds a literal value"


def test_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    pg_mounts = {volume_parts(v)[0] for v in services["postgres"]["volumes"]}
    assert pg_mounts & declared, "postgres data must live on a named volume"
    api = services["api"]
    mounts = {volume_parts(v)[1]: volume_parts(v)[0] for v in api["volumes"]}
    blob_dir = env_of(api)["RETAILKLIP_BLOB_DIR"]
    assert mounts.get(blob_dir) in declared, "blobs must be one named volume shared by replicas"
    assert "/models" in mounts
    shard_dir = env_of(api).get("RETAILKLIP_SHARD_DIR", "/data/shards")
    assert shard_dir not in mounts, "shards are a per-replica cache, not a shared volume"


def test_build_contexts_name_existing_dockerfiles() -> None:
    for path in (COMPOSE, COMPOSE_CPU):
        for name, service in load(path)["services"].items():
            build = service.get("build")
            if isinstance(build, dict):
                dockerfile = (
                    ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
                )
                assert dockerfile.is_file(), f"{path.name}: {name} builds missing {dockerfile}"


def test_cpu_override(services: dict[str, Any], cpu_services: dict[str, Any]) -> None:
    for name in ("api", "migrate"):
        assert cpu_services[name]["build"]["dockerfile"] == "docker/Dockerfile.cpu"
        assert "cpu" in cpu_services[name]["image"]
        assert cpu_services[name]["depends_on"] == services[name]["depends_on"]
    api = cpu_services["api"]
    assert env_of(api)["RETAILKLIP_DEVICE"] == "cpu"
    reservations = api.get("deploy", {}).get("resources", {}).get("reservations", {})
    assert not reservations.get("devices"), "the CPU override must drop the GPU reservation"
    assert cpu_services["api"]["healthcheck"] == services["api"]["healthcheck"]


# --------------------------------------------------------------------------------------------
# Dockerfiles
# --------------------------------------------------------------------------------------------


def final_stage(path: Path) -> list[tuple[str, str]]:
    lines = instructions(path)
    last_from = max(i for i, (word, _) in enumerate(lines) if word == "FROM")
    return lines[last_from:]


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_is_multi_stage(flavour: str) -> None:
    stages = [
        rest
        for word, rest in instructions(DOCKERFILES[flavour])
        if word == "FROM" and re.search(r"\sAS\s+\S+$", rest, re.IGNORECASE)
    ]
    assert len(stages) >= 2, "expected a builder and a runtime stage (FROM ... AS ...)"
    assert any(
        word == "COPY" and "--from=" in rest for word, rest in final_stage(DOCKERFILES[flavour])
    ), "the runtime stage should copy its environment from the builder"


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_runtime_stage(flavour: str) -> None:
    stage = final_stage(DOCKERFILES[flavour])
    users = [rest.split(":")[0] for word, rest in stage if word == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    assert users[-1] not in ("root", "0"), users[-1]
    healthchecks = [rest for word, rest in stage if word == "HEALTHCHECK"]
    assert healthchecks and "/readyz" in healthchecks[-1]
    assert any(word == "EXPOSE" and "8000" in rest.split() for word, rest in stage)
    cmds = [rest for word, rest in stage if word == "CMD"]
    assert cmds and json.loads(cmds[-1]) == SERVE_CMD
    volumes = " ".join(rest for word, rest in stage if word == "VOLUME")
    assert "/data" in volumes and "/models" in volumes


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_installs_torch_first_then_the_project(flavour: str) -> None:
    runs = [rest for word, rest in instructions(DOCKERFILES[flavour]) if word == "RUN"]
    torch_at = next(i for i, r in enumerate(runs) if re.search(r"pip install .*torch", r))
    project = r'pip install (\.|"\.\[torch\]")(\s|$)'
    project_at = next(i for i, r in enumerate(runs) if re.search(project, r))
    assert torch_at < project_at
    assert not any(re.search(r"pip install .*(-e|--editable)\s+\.", r) for r in runs)
    text = DOCKERFILES[flavour].read_text()
    assert ("whl/cpu" in text) == (flavour == "cpu")
    if flavour == "cuda":
        assert any('pip install ".[torch]"' in r for r in runs)
        return
    # CPU: torch only in the export venv; the serving venv is the project without extras,
    # checked to lack torch, and the runtime stage takes that venv and the graph, nothing else.
    assert any('/opt/build/bin/pip install ".[torch]"' in r and "export-onnx" in r for r in runs)
    assert any(
        re.search(r"/opt/venv/bin/pip install \.(\s|$)", r)
        and '! /opt/venv/bin/python -c "import torch"' in r
        for r in runs
    )
    runtime = final_stage(DOCKERFILES[flavour])
    copied = {
        rest.split()[1] for word, rest in runtime if word == "COPY" and "--from=builder" in rest
    }
    assert copied == {"/opt/venv", "/opt/onnx", "/src/alembic.ini", "/src/migrations"}


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_dockerfile_bakes_in_no_secrets(flavour: str) -> None:
    for word, rest in instructions(DOCKERFILES[flavour]):
        if word in ("ENV", "ARG"):
            assert not any(s in rest.upper() for s in SECRET_WORDS), f"{word} {rest}"
            assert "RETAILKLIP_DATABASE_URL" not in rest


# --------------------------------------------------------------------------------------------
# .dockerignore
# --------------------------------------------------------------------------------------------


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "$")


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: a path is excluded when it or a parent directory matches; last match wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _dockerignore_regex(pattern.lstrip("!").strip("/"))
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore() -> None:
    path = ROOT / ".dockerignore"
    assert path.is_file()
    patterns = [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    for unwanted in (
        ".venv/bin/python",
        ".git/HEAD",
        ".env",
        "data/retailklip.db",
        "runs/exp1/last.safetensors",
        "app/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v/cache",
    ):
        assert dockerignored(unwanted, patterns), f"{unwanted} would be sent to the builder"
    for needed in (
        "pyproject.toml",
        "README.md",
        "alembic.ini",
        "app/cli/main.py",
        "app/models/retailklip-lite0-grocery.safetensors",
        "app/models/retailklip-lite0-shelf.safetensors",
        "training/__init__.py",
        "migrations/env.py",
        "migrations/versions/0001_initial.py",
    ):
        assert not dockerignored(needed, patterns), f"{needed} is excluded from the image build"


# --------------------------------------------------------------------------------------------
# bench/compose_check.sh and its stand-in images
# --------------------------------------------------------------------------------------------

COMPOSE_CHECK = ROOT / "bench" / "compose_check.sh"
STANDINS = ROOT / "bench" / "standins"


@pytest.mark.parametrize(
    "script", [COMPOSE_CHECK, STANDINS / "postgres-entrypoint.sh"], ids=lambda p: p.name
)
def test_compose_check_scripts_pass_shellcheck(script: Path) -> None:
    assert shutil.which("shellcheck"), "shellcheck not installed (apt-get install shellcheck)"
    proc = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_the_stand_ins_carry_the_names_the_compose_file_pulls(compose: dict[str, Any]) -> None:
    pulled = {s["image"] for s in compose["services"].values() if "build" not in s}
    assert pulled == {"postgres:16", "haproxy:3.0"}
    text = COMPOSE_CHECK.read_text()
    assert "for standin in postgres:16 haproxy:3.0; do" in text
    for image in pulled:
        name = image.split(":")[0]
        assert (STANDINS / f"{name}.Dockerfile").is_file()
    # The postgres stand-in's entrypoint reads what the compose file sets.
    entrypoint = (STANDINS / "postgres-entrypoint.sh").read_text()
    for variable in compose["services"]["postgres"]["environment"]:
        assert variable in entrypoint, variable
