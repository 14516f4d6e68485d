"""The image (deploy/Dockerfile): its shape, the commands it runs, its healthcheck against live
services, and its builder steps run in a fresh virtualenv from the .dockerignore'd context."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.deploy_support import (
    COMPOSE_DIR,
    ROOT,
    build_context_files,
    builder_steps,
    compose_config,
    dockerfile_args,
    dockerfile_env,
    dockerfile_stages,
    resolve_cli,
)
from tillstream.dev.ports import free_port
from tillstream.dev.processes import Service, clean_environment

# -- the Dockerfile -------------------------------------------------------------------------


def test_dockerfile_shape() -> None:
    stages = dockerfile_stages()
    assert list(stages) == ["builder", "runtime"], "multi-stage: builder, then runtime"
    assert dockerfile_args()["PYTHON_IMAGE"] == "python:3.11-slim"
    runtime = stages["runtime"]
    instructions = {i for i, _, _ in runtime}
    assert runtime[0][1].split()[0] == "${PYTHON_IMAGE}"
    by_kind: dict[str, list[str]] = {}
    for instruction, arguments, _ in runtime:
        by_kind.setdefault(instruction, []).append(arguments)
    assert json.loads(by_kind["ENTRYPOINT"][-1]) == ["tillstream"]
    assert json.loads(by_kind["CMD"][-1]) == ["--help"]
    user = by_kind["USER"][-1].split(":")[0]
    assert user not in ("root", "0"), "the runtime stage runs as root"
    assert set(" ".join(by_kind["EXPOSE"]).split()) == {"8080", "9400"}
    assert any(a.startswith("--from=builder /opt/tillstream") for a in by_kind["COPY"])
    labels = " ".join(by_kind["LABEL"])
    for label in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{label}=" in labels
    # Small: nothing is compiled or installed with a package manager in the final stage.
    for arguments in by_kind.get("RUN", []):
        assert not re.search(r"\b(apt-get|apt|pip|gcc|make)\b", arguments), arguments
    assert "HEALTHCHECK" in instructions
    assert "/healthz" in by_kind["HEALTHCHECK"][-1]


def test_dockerfile_tillstream_commands_exist() -> None:
    """``tillstream ...`` in RUN steps (``&&``-chained) and the default CMD parse."""
    commands: list[list[str]] = []
    for stage in dockerfile_stages().values():
        for instruction, arguments, _ in stage:
            if instruction == "RUN":
                for part in re.split(r"&&|;", arguments):
                    words = shlex.split(part.split(">")[0])
                    if words and (words[0] == "tillstream" or words[0].endswith("/bin/tillstream")):
                        commands.append(words[1:])
            elif instruction == "CMD":
                commands.append(json.loads(arguments))
    assert ["--help"] in commands
    assert any(c[:1] == ["consume"] for c in commands)
    for args in commands:
        resolve_cli(args)


def test_dockerfile_copies_only_what_dockerignore_lets_in() -> None:
    context = build_context_files()
    assert "pyproject.toml" in context
    assert not [f for f in context if f.startswith((".venv/", "tests/", "deploy/", "docs/"))]
    assert not [f for f in context if f.endswith((".db", ".pyc", ".env"))]
    for instruction, arguments, _ in dockerfile_stages()["builder"]:
        if instruction == "COPY":
            *sources, _ = arguments.split()
            for source in sources:
                source = source.rstrip("/")
                assert any(f == source or f.startswith(source + "/") for f in context), source


@pytest.fixture
def service_port() -> int:
    port: int = free_port()
    return port


def _start(args: list[str], env: dict[str, str], cwd: Path, port: int) -> Service:
    """``tillstream ARGS`` listening on ``port``, logging to ``cwd/ARGS[0].log``."""
    log = cwd / f"{args[0]}.log"
    return Service(args[0], args, port, log, env, cwd=cwd, own_session=False).start()


def _healthcheck(test: list[str], env: dict[str, str] | None = None) -> int:
    """Run a Docker/Compose healthcheck ``test`` here, as the engine runs it in the container."""
    kind, *command = test
    base = clean_environment()
    argv = ["sh", "-c", command[0]] if kind == "CMD-SHELL" else command
    argv = [sys.executable if a == "python" else a for a in argv]
    return subprocess.run(argv, env={**base, **(env or {})}, timeout=30).returncode


def _wait_until(check: Any, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.3)
    return False


def test_healthchecks_pass_against_live_services(service_port: int, tmp_path: Path) -> None:
    """The image's HEALTHCHECK and the compose healthchecks, run against a real edge and a
    real consumer (Kafka unreachable: both stay alive, and so healthy, while they retry)."""
    (healthcheck,) = [a for i, a, _ in dockerfile_stages()["runtime"] if i == "HEALTHCHECK"]
    image_test = ["CMD", *json.loads(healthcheck.partition("CMD ")[2])]
    unreachable = {"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    port = str(service_port)
    # Nothing listening: unhealthy.
    assert _healthcheck(image_test, {"HEALTHCHECK_PORT": port}) != 0

    store = compose_config(COMPOSE_DIR / "store.yaml")["services"]["edge"]
    edge = _start(
        ["edge", "run", "--store", "S001", "--listen", f"127.0.0.1:{port}", "--outbox", "o.db"],
        unreachable,
        tmp_path,
        service_port,
    )
    try:
        store_test = [
            a.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for a in store["healthcheck"]["test"]
        ]
        assert _wait_until(lambda: _healthcheck(store_test) == 0), "edge never healthy"
        assert _healthcheck(image_test, {"HEALTHCHECK_PORT": port}) == 0
    finally:
        exit_code = edge.stop()
    assert exit_code == 0, edge.log()

    hq = compose_config(COMPOSE_DIR / "hq.yaml")["services"]["erp"]
    erp = _start(
        ["consume", "erp", "--db", f"sqlite:///{tmp_path}/erp.db", "--listen", f"127.0.0.1:{port}"],
        unreachable,
        tmp_path,
        service_port,
    )
    try:
        erp_test = [
            a.replace("127.0.0.1:9401", f"127.0.0.1:{port}") for a in hq["healthcheck"]["test"]
        ]
        assert _wait_until(lambda: _healthcheck(erp_test) == 0), "erp never healthy"
        assert _healthcheck(image_test, {"HEALTHCHECK_PORT": port}) == 0
    finally:
        erp.stop()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_image_builder_steps_make_a_self_contained_install(tmp_path: Path) -> None:
    """The builder stage's RUN steps, run here from the .dockerignore'd context, give a venv
    whose ``tillstream`` works outside the repository, schemas bundled."""
    context = tmp_path / "context"
    for relative in build_context_files():
        target = context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    # WORKDIR and COPY of the builder stage.
    src = tmp_path / "src"
    src.mkdir()
    for instruction, arguments, _ in dockerfile_stages()["builder"]:
        if instruction == "COPY":
            *sources, destination = arguments.split()
            for source in sources:
                origin = context / source.rstrip("/")
                if origin.is_dir():
                    shutil.copytree(origin, src / destination.rstrip("/"))
                else:
                    shutil.copy2(origin, src / destination / origin.name)
    venv, wheels = tmp_path / "venv", tmp_path / "wheels"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TILLSTREAM_", "PYTHON"))}
    base.pop("VIRTUAL_ENV", None)
    env = {
        **base,
        **dockerfile_env("builder"),
        "VIRTUAL_ENV": str(venv),
        "WHEELS": str(wheels),
        # `python` is a Python 3.11 as in the python:3.11-slim image.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
    }
    steps = builder_steps()
    assert len(steps) >= 3, "the build steps markers are missing"
    for step in steps:
        done = subprocess.run(
            ["sh", "-c", step], cwd=src, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"RUN {step}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    run_env = {k: v for k, v in base.items() if k != "PWD"}

    def tillstream(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / "tillstream"), *args],
            cwd=outside,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    version = tillstream("--version")
    assert version.returncode == 0, version.stderr
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["version"] in version.stdout
    assert tillstream("consume", "--help").returncode == 0
    assert tillstream("edge", "run", "--help").returncode == 0
    listed = tillstream("schemas", "list")
    assert listed.returncode == 0, listed.stderr
    assert "sale" in listed.stdout
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import tillstream.core.schemas as s; print(s.default_schemas_dir())",
        ],
        cwd=outside,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), "schemas must come from the wheel"
