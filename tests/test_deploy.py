"""The deployment files (deploy/): what can be checked without a container engine.

- Compose files are validated against the Compose specification's JSON schema, the copy
  vendored by the check-jsonschema package (no download at test time), after the same
  ``${VAR}`` interpolation Compose does, then checked for what the schema allows but a
  deployment must not lack (healthchecks, restart policies, grace periods, declared volumes).
- Kubernetes manifests are validated against the Kubernetes JSON schemas vendored by the
  kubernetes-validate package (strict: unknown fields fail), then checked for consistency
  (selectors, probes on declared ports, kustomization listing every file).
- Every ``tillstream`` command line they run is parsed by the real click CLI, every
  ``TILLSTREAM_*`` variable is a setting, and the values they set pass ``Settings``.
- The Dockerfile's healthcheck is run against live services, and its builder stage's steps
  are run in a fresh virtualenv from the .dockerignore'd context (slow test).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import click
import jsonschema
import kubernetes_validate
import pytest
import yaml

from producers.devices.config import load_devices
from tillstream.cli import main
from tillstream.devkafka import free_port
from tillstream.settings import Settings, env_name, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
K8S_DIR = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

COMPOSE_FILES = sorted(COMPOSE_DIR.glob("*.yaml"))
K8S_FILES = sorted(K8S_DIR.glob("*.yaml"))
SETTINGS_VARIABLES = {env_name(field) for field in Settings.model_fields}
# Oldest Kubernetes release whose schemas the manifests must satisfy (and the newest shipped).
K8S_VERSION = "1.30.0"
# Values for the variables the compose files require (${X:?...}); all others keep defaults.
COMPOSE_TEST_ENV = {
    "TILLSTREAM_STORE_ID": "S001",
    "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": "hq.example.internal:19092",
    "POSTGRES_PASSWORD": "secret",
    "GRAFANA_ADMIN_PASSWORD": "secret",
    "DEVICES_FILE": "./devices.example.toml",
}


# -- helpers: YAML, Compose interpolation, the Dockerfile -----------------------------------


def load_yaml_documents(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def variables_in(value: Any) -> Iterator[str]:
    """Names of the ``$VAR`` / ``${VAR...}`` references in every string of ``value``."""
    if isinstance(value, str):
        for m in _VARIABLE.finditer(value):
            name = m.group("braced") or m.group("plain")
            if name:
                yield name
    elif isinstance(value, dict):
        for v in value.values():
            yield from variables_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from variables_in(v)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of every string value (not keys), as ``docker compose config``.

    ``${X:-d}`` d if X is unset or empty, ``${X-d}`` d if unset, ``${X:?msg}`` / ``${X?msg}``
    an error, ``$$`` a literal ``$``.
    """
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("plain")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and missing:
            return arg
        if op in (":?", "?") and missing:
            raise KeyError(f"required variable {name} is not set: {arg}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def compose_config(path: Path, **env: str) -> dict[str, Any]:
    """The compose file as the engine sees it: YAML (anchors merged), then interpolated."""
    (raw,) = load_yaml_documents(path)
    config: dict[str, Any] = interpolate(raw, {**COMPOSE_TEST_ENV, **env})
    return config


def is_tillstream_image(service: dict[str, Any]) -> bool:
    build = service.get("build")
    return isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile"


def tillstream_services() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in COMPOSE_FILES:
        for name, service in compose_config(path)["services"].items():
            if is_tillstream_image(service):
                yield path.name, name, service


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(number) * units[unit]
    return total


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str, list[str]]]:
    """(INSTRUCTION, arguments, comments just before it), continuation lines joined."""
    out: list[tuple[str, str, list[str]]] = []
    comments: list[str] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            comments.append(stripped)
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        instruction, _, arguments = full.partition(" ")
        out.append((instruction.upper(), arguments.strip(), comments))
        comments = []
    return out


def dockerfile_stages() -> dict[str, list[tuple[str, str, list[str]]]]:
    """Instructions per build stage, by stage name (the ``AS`` name, or its index)."""
    stages: dict[str, list[tuple[str, str, list[str]]]] = {}
    current: list[tuple[str, str, list[str]]] | None = None
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            words = instruction[1].split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            current = stages.setdefault(name, [])
        if current is not None:
            current.append(instruction)
    return stages


def dockerfile_args() -> dict[str, str]:
    """Global ARG defaults (before the first FROM)."""
    args: dict[str, str] = {}
    for instruction, arguments, _ in dockerfile_instructions():
        if instruction == "FROM":
            break
        if instruction == "ARG":
            name, _, default = arguments.partition("=")
            args[name] = default
    return args


def dockerfile_env(stage: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments, _ in dockerfile_stages()[stage]:
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def builder_steps() -> list[str]:
    """The builder stage's RUN lines between the ``build steps: begin/end`` markers."""
    steps: list[str] = []
    inside = False
    for instruction, arguments, comments in dockerfile_stages()["builder"]:
        if any("build steps: end" in c for c in comments):
            inside = False
        if any("build steps: begin" in c for c in comments):
            inside = True
        if inside and instruction == "RUN":
            steps.append(arguments)
    return steps


def dockerignore_includes(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore lets ``relative`` (a file path) into the build context.

    The subset of the syntax the file uses: the last matching pattern wins, ``!`` re-includes,
    a pattern matching a parent directory matches everything below it, ``**/`` any depth.
    """
    parts = relative.split("/")
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if pattern.startswith("**/"):
            tail = pattern[3:]
            matched = any(fnmatch.fnmatchcase(part, tail) for part in parts)
        else:
            matched = any(
                fnmatch.fnmatchcase(c, pattern) and c.count("/") == pattern.count("/")
                for c in candidates
            )
        if matched:
            included = negate
    return included


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def build_context_files() -> list[str]:
    """The repository's files that reach the build context."""
    patterns = dockerignore_patterns()
    reincluded = [p[1:].strip("/") for p in patterns if p.startswith("!")]
    files = []
    for folder, dirs, names in os.walk(ROOT):
        base = Path(folder).relative_to(ROOT).as_posix().removeprefix(".")
        prefix = f"{base}/" if base else ""
        # Skip excluded folders nothing is re-included from (.git, .venv, tests, ...).
        dirs[:] = [
            d
            for d in dirs
            if dockerignore_includes(prefix + d, patterns)
            or any(r.startswith(prefix + d + "/") for r in reincluded)
        ]
        files += [prefix + n for n in names if dockerignore_includes(prefix + n, patterns)]
    return sorted(files)


def resolve_cli(args: list[str]) -> click.Command:
    """Parse ``tillstream ARGS`` with the real CLI without running it: every subcommand must
    exist, and the last one must accept the options and arguments (types, ranges, files)."""
    rest = list(args)
    if rest and rest[0].startswith("-"):  # options of the group itself (--help, --version)
        with pytest.raises(click.exceptions.Exit) as exited:
            main.make_context("tillstream", rest)
        assert exited.value.exit_code == 0
        return main
    ctx = main.make_context("tillstream", [], resilient_parsing=True)
    command: click.Command = main
    while isinstance(command, click.Group):
        assert rest, f"tillstream {' '.join(args)}: no subcommand of {command.name}"
        name = rest.pop(0)
        sub = command.get_command(ctx, name)
        assert sub is not None, f"tillstream {' '.join(args)}: no command {name!r}"
        if isinstance(sub, click.Group):
            ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
        command = sub
    if "--help" in rest or "-h" in rest:
        with pytest.raises(click.exceptions.Exit) as exited:
            command.make_context(command.name or "", rest, parent=ctx)
        assert exited.value.exit_code == 0
    else:
        command.make_context(command.name or "", rest, parent=ctx)
    return command


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(os.environ):
        if key.startswith("TILLSTREAM_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("TILLSTREAM_"):
            monkeypatch.setenv(key, value)
    return load_settings()


# -- every file parses ----------------------------------------------------------------------


def test_deploy_files_exist() -> None:
    assert DOCKERFILE.is_file()
    assert DOCKERIGNORE.is_file()
    assert {p.name for p in COMPOSE_FILES} >= {"store.yaml", "hq.yaml"}
    assert (K8S_DIR / "kustomization.yaml").is_file()
    assert DEPLOY_DOC.is_file()


@pytest.mark.parametrize(
    "path", COMPOSE_FILES + K8S_FILES, ids=lambda p: str(p.relative_to(DEPLOY))
)
def test_yaml_parses(path: Path) -> None:
    documents = load_yaml_documents(path)
    assert documents, f"{path} is empty"
    assert all(isinstance(doc, dict) for doc in documents)


# -- Compose --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendored.read_text(encoding="utf-8"))
    return schema


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_satisfies_the_compose_specification(
    path: Path, compose_schema: dict[str, Any]
) -> None:
    config = compose_config(path)
    validator_class = jsonschema.validators.validator_for(compose_schema)
    validator_class.check_schema(compose_schema)
    validator = validator_class(compose_schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{path.name}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_requires_its_mandatory_variables(path: Path) -> None:
    """A file without a store id, a broker or a password refuses to start (``${X:?...}``)."""
    (raw,) = load_yaml_documents(path)
    required = {
        m.group("braced")
        for text in _strings(raw)
        for m in _VARIABLE.finditer(text)
        if m.group("op") in (":?", "?")
    }
    for name in required:
        env = {k: v for k, v in COMPOSE_TEST_ENV.items() if k != name}
        with pytest.raises(KeyError, match=name):
            interpolate(raw, env)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_services_are_complete(path: Path) -> None:
    """What the schema allows but a deployment must not lack."""
    config = compose_config(path)
    services: dict[str, Any] = config["services"]
    declared_volumes = set(config.get("volumes") or {})
    used_volumes: set[str] = set()
    for name, service in services.items():
        where = f"{path.name}: {name}"
        assert service.get("image"), f"{where}: no image"
        if "build" in service:
            context = (path.parent / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), f"{where}: no Dockerfile"
        if "command" in service:
            assert isinstance(service["command"], list), f"{where}: command must be a list"
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{where}: quote port {port!r}"
        one_shot = service.get("restart") == "no"
        if not one_shot:
            assert service.get("restart") in ("always", "unless-stopped"), f"{where}: restart"
            assert "healthcheck" in service, f"{where}: no healthcheck"
            test = service["healthcheck"]["test"]
            assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), where
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{where}: depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source = volume.partition(":")[0]
                kind = "bind" if source.startswith((".", "/")) else "volume"
            else:
                source, kind = volume["source"], volume["type"]
            if kind == "volume":
                used_volumes.add(source)
            elif kind == "bind" and source.startswith("."):
                assert (path.parent / source).exists(), f"{where}: {source} does not exist"
    assert used_volumes <= declared_volumes, f"{path.name}: undeclared volumes"
    assert declared_volumes <= used_volumes, f"{path.name}: unused volumes"


@pytest.mark.parametrize(
    ("file", "service_name", "service"),
    list(tillstream_services()),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_compose_tillstream_service(
    file: str, service_name: str, service: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its command exists with those options, its settings exist and are valid, it drains."""
    args = list(service["command"])
    # Files the service mounts are checked where they are on this machine (click checks that
    # --devices exists, and the devices file itself is validated below).
    mounts = {
        v["target"]: (COMPOSE_DIR / v["source"]).resolve()
        for v in service.get("volumes", [])
        if isinstance(v, dict) and v["type"] == "bind" and v["source"].startswith(".")
    }
    command = resolve_cli([str(mounts.get(a, a)) for a in args])
    environment: dict[str, str] = {k: str(v) for k, v in service.get("environment", {}).items()}
    unknown = {k for k in environment if k.startswith("TILLSTREAM_")} - SETTINGS_VARIABLES
    assert not unknown, f"{file}: {service_name}: not settings: {unknown}"
    settings_from(environment, monkeypatch)  # raises SettingsError naming a bad value
    if service.get("restart") != "no":
        # Long-running services get time for their SIGTERM drain (edge: 20 s).
        assert duration_seconds(service["stop_grace_period"]) >= 30, service_name
        listen = args[args.index("--listen") + 1] if "--listen" in args else None
        assert listen is not None, f"{service_name}: say --listen, the healthcheck needs it"
        port = listen.rpartition(":")[2]
        assert f"127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"])
        assert any(p.endswith(f":{port}") for p in service.get("ports", [])), service_name
    assert command.name in ("run", "consume", "create")


def test_store_edge_devices_match_the_devices_file() -> None:
    config = compose_config(COMPOSE_DIR / "store.yaml")
    edge = config["services"]["edge"]
    container_ports = {mapping.split(":")[1] for mapping in edge["devices"]}
    devices_file = COMPOSE_DIR / "devices.example.toml"
    devices = load_devices(devices_file)
    assert {d.port for d in devices.devices.values()} == container_ports
    mount = next(v for v in edge["volumes"] if v["target"] == "/etc/tillstream/devices.toml")
    assert mount["read_only"] is True
    assert edge["group_add"], "the container user needs the serial ports' group"
    outbox = next(v for v in edge["volumes"] if v["type"] == "volume")
    assert edge["command"][edge["command"].index("--outbox") + 1].startswith(outbox["target"])


def test_hq_kafka_cluster_is_replicated() -> None:
    config = compose_config(COMPOSE_DIR / "hq.yaml")
    services = config["services"]
    brokers = {n: s for n, s in services.items() if s["image"].startswith("apache/kafka:")}
    assert len(brokers) == 3
    assert {s["image"] for s in brokers.values()} == {"apache/kafka:4.1.1"}
    node_ids = {str(s["environment"]["KAFKA_NODE_ID"]) for s in brokers.values()}
    assert node_ids == {"1", "2", "3"}
    for broker in brokers.values():
        env = broker["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert len(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == 3
        assert str(env["KAFKA_MIN_INSYNC_REPLICAS"]) == "2"
    topics = services["topics"]["environment"]
    assert topics["TILLSTREAM_TOPIC_REPLICATION_FACTOR"] == "3"
    assert topics["TILLSTREAM_TOPIC_MIN_INSYNC_REPLICAS"] == "2"
    assert set(services["topics"]["depends_on"]) == set(brokers)
    for consumer in ("erp", "crm", "analytics"):
        service = services[consumer]
        assert service["command"][:2] == ["consume", consumer]
        assert service["environment"]["TILLSTREAM_DB_URL"].startswith("postgresql://")
        assert service["environment"]["TILLSTREAM_DB_URL"].endswith(f"@postgres:5432/{consumer}")
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    listens = [services[c]["command"][-1] for c in ("erp", "crm", "analytics")]
    assert len(set(listens)) == 3, "each consumer its own --listen port"


def test_hq_postgres_creates_a_database_per_consumer() -> None:
    config = compose_config(COMPOSE_DIR / "hq.yaml")
    postgres = config["services"]["postgres"]
    assert postgres["image"] == "postgres:16"
    init = next(v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v)
    script = (COMPOSE_DIR / init.split(":")[0]).read_text(encoding="utf-8")
    created = set(re.findall(r"CREATE DATABASE (\w+);", script))
    assert created == {"erp", "crm", "analytics"}


def test_hq_monitoring_mounts_the_observability_files() -> None:
    config = compose_config(COMPOSE_DIR / "hq.yaml")
    prometheus = " ".join(config["services"]["prometheus"]["volumes"])
    grafana = " ".join(config["services"]["grafana"]["volumes"])
    for source in ("../prometheus/prometheus.yml", "../prometheus/alerts.yml"):
        assert source in prometheus
    for source in ("../grafana/provisioning", "../grafana/dashboards"):
        assert source in grafana


def test_compose_variables_are_documented() -> None:
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    for path in COMPOSE_FILES:
        (raw,) = load_yaml_documents(path)
        for name in set(variables_in(raw)):
            assert f"`{name}`" in doc, f"{path.name}: ${{{name}}} is not in docs/deploy.md"
            if name.startswith("TILLSTREAM_"):
                assert name in SETTINGS_VARIABLES, f"{path.name}: {name} is not a setting"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_env_example_sets_known_variables(path: Path) -> None:
    """``<file>.env.example`` names only variables its compose file reads, and every required
    one (so a copied example fails loudly only where a secret must be filled in)."""
    example = path.with_suffix(".env.example")
    assert example.is_file(), f"{example.name} is missing"
    (raw,) = load_yaml_documents(path)
    used = set(variables_in(raw))
    required = {
        m.group("braced")
        for text in _strings(raw)
        for m in _VARIABLE.finditer(text)
        if m.group("op") in (":?", "?")
    }
    names = set()
    for line in example.read_text(encoding="utf-8").splitlines():
        line = line.strip().lstrip("#").strip()
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            names.add(line.partition("=")[0])
    assert names <= used, f"{example.name}: not read by {path.name}: {names - used}"
    assert required <= names, f"{example.name}: lacks {required - names}"


def test_documented_hq_commands_exist() -> None:
    """The ``hq run --rm SERVICE ARGS`` examples of docs/deploy.md parse."""
    services = compose_config(COMPOSE_DIR / "hq.yaml")["services"]
    found = 0
    for line in DEPLOY_DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^hq run --rm (?:-T )?(\S+) (.*?)(?:\s+#.*)?$", line)
        if m:
            assert is_tillstream_image(services[m.group(1)]), line
            resolve_cli(shlex.split(m.group(2).partition("<")[0]))
            found += 1
    assert found >= 3


# -- Kubernetes -----------------------------------------------------------------------------


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in K8S_FILES
        if path.name != "kustomization.yaml"
        for doc in load_yaml_documents(path)
    ]


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


@pytest.mark.parametrize(
    ("file", "doc"),
    k8s_documents(),
    ids=lambda v: v if isinstance(v, str) else f"{v['kind']}/{v['metadata']['name']}",
)
def test_k8s_manifest_satisfies_the_kubernetes_schema(file: str, doc: dict[str, Any]) -> None:
    assert {"apiVersion", "kind", "metadata"} <= doc.keys(), file
    assert doc["metadata"].get("name"), file
    for version in (K8S_VERSION, kubernetes_validate.latest_version()):
        kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = load_yaml_documents(K8S_DIR / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    on_disk = {p.name for p in K8S_FILES} - {"kustomization.yaml"}
    assert set(listed) == on_disk
    (namespace,) = k8s_kind("Namespace")
    assert kustomization["namespace"] == namespace["metadata"]["name"]
    images = {i["name"] for i in kustomization["images"]}
    for _, doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                assert container["image"].partition(":")[0] in images


def _container_env(
    container: dict[str, Any], configmaps: dict[str, dict[str, str]], secrets: dict[str, Any]
) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def test_k8s_workloads(monkeypatch: pytest.MonkeyPatch) -> None:
    configmaps = {c["metadata"]["name"]: c["data"] for c in k8s_kind("ConfigMap")}
    secrets = {s["metadata"]["name"]: s["stringData"] for s in k8s_kind("Secret")}
    for data in configmaps.values():
        assert set(data) <= SETTINGS_VARIABLES, set(data) - SETTINGS_VARIABLES
    partitions = int(configmaps["tillstream-config"]["TILLSTREAM_TOPIC_PARTITIONS"])
    for workload in k8s_kind("Deployment") + k8s_kind("Job"):
        spec = workload["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        name = workload["metadata"]["name"]
        args = container["args"]
        resolve_cli(args)
        env = _container_env(container, configmaps, secrets)
        assert {k for k in env if k.startswith("TILLSTREAM_")} <= SETTINGS_VARIABLES, name
        settings_from(env, monkeypatch)
        assert container["resources"]["requests"].keys() >= {"cpu", "memory"}, name
        assert "memory" in container["resources"]["limits"], name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
    for deployment in k8s_kind("Deployment"):
        name = deployment["metadata"]["name"]
        spec = deployment["spec"]
        template = spec["template"]
        labels = template["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), name
        assert 1 <= spec["replicas"] <= partitions, f"{name}: replicas beyond partitions idle"
        assert template["spec"]["terminationGracePeriodSeconds"] >= 30, name
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        args = container["args"]
        assert args[0] == "consume"
        listen_port = int(args[args.index("--listen") + 1].rpartition(":")[2])
        assert listen_port in ports.values(), f"{name}: --listen port is not declared"
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{name}: {probe}"
            port = ports.get(get["port"], get["port"])
            assert port == listen_port, f"{name}: {probe} on {get['port']}"
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == listen_port
        assert annotations["prometheus.io/path"] == "/metrics"
    consumers = {
        d["spec"]["template"]["spec"]["containers"][0]["args"][1] for d in k8s_kind("Deployment")
    }
    assert consumers == {"erp", "crm", "analytics"}


def test_k8s_services_and_budgets_select_a_deployment() -> None:
    templates = [d["spec"]["template"] for d in k8s_kind("Deployment")]
    for service in k8s_kind("Service"):
        selector = service["spec"]["selector"]
        (match,) = [t for t in templates if selector.items() <= t["metadata"]["labels"].items()]
        ports = {p["name"]: p["containerPort"] for p in match["spec"]["containers"][0]["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports or port["targetPort"] in ports.values()
    budgets = k8s_kind("PodDisruptionBudget")
    assert budgets
    for budget in budgets:
        selector = budget["spec"]["selector"]["matchLabels"]
        matches = [t for t in templates if selector.items() <= t["metadata"]["labels"].items()]
        assert len(matches) == 1, budget["metadata"]["name"]


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


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TILLSTREAM_")}
    with (cwd / f"{args[0]}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tillstream", *args],
            env={**base, **env},
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _healthcheck(test: list[str], env: dict[str, str] | None = None) -> int:
    """Run a Docker/Compose healthcheck ``test`` here, as the engine runs it in the container."""
    kind, *command = test
    base = {k: v for k, v in os.environ.items() if not k.startswith("TILLSTREAM_")}
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
    )
    try:
        store_test = [
            a.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for a in store["healthcheck"]["test"]
        ]
        assert _wait_until(lambda: _healthcheck(store_test) == 0), "edge never healthy"
        assert _healthcheck(image_test, {"HEALTHCHECK_PORT": port}) == 0
    finally:
        _stop(edge)
    assert edge.returncode == 0, (tmp_path / "edge.log").read_text()

    hq = compose_config(COMPOSE_DIR / "hq.yaml")["services"]["erp"]
    erp = _start(
        ["consume", "erp", "--db", f"sqlite:///{tmp_path}/erp.db", "--listen", f"127.0.0.1:{port}"],
        unreachable,
        tmp_path,
    )
    try:
        erp_test = [
            a.replace("127.0.0.1:9401", f"127.0.0.1:{port}") for a in hq["healthcheck"]["test"]
        ]
        assert _wait_until(lambda: _healthcheck(erp_test) == 0), "erp never healthy"
        assert _healthcheck(image_test, {"HEALTHCHECK_PORT": port}) == 0
    finally:
        _stop(erp)


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
            "import tillstream.schemas as s; print(s.default_schemas_dir())",
        ],
        cwd=outside,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), "schemas must come from the wheel"
