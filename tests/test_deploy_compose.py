"""The Compose files of deploy/compose, checked without a container engine: the Compose
specification's JSON schema (vendored by check-jsonschema), after Compose's own ``${VAR}``
interpolation, then what a deployment must not lack, and every command and setting used."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy_support import (
    _VARIABLE,
    COMPOSE_DIR,
    COMPOSE_FILES,
    COMPOSE_OVERRIDES,
    COMPOSE_TEST_ENV,
    DEPLOY,
    DEPLOY_DOC,
    DOCKERFILE,
    DOCKERIGNORE,
    K8S_DIR,
    K8S_FILES,
    SETTINGS_VARIABLES,
    compose_config,
    duration_seconds,
    interpolate,
    is_tillstream_image,
    load_yaml_documents,
    merged_config,
    resolve_cli,
    settings_from,
    tillstream_services,
    variables_in,
)
from tillstream_edge.auth import load_tokens
from tillstream_edge.devices.config import load_devices

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
    for consumer in ("erp", "crm", "analytics", "audit", "fleet"):
        service = services[consumer]
        assert service["command"][:2] == ["consume", consumer]
        assert service["environment"]["TILLSTREAM_DB_URL"].startswith("postgresql://")
        assert service["environment"]["TILLSTREAM_DB_URL"].endswith(f"@postgres:5432/{consumer}")
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    listens = [services[c]["command"][-1] for c in ("erp", "crm", "analytics", "audit", "fleet")]
    assert len(set(listens)) == 5, "each consumer its own --listen port"


def test_hq_postgres_creates_a_database_per_consumer() -> None:
    config = compose_config(COMPOSE_DIR / "hq.yaml")
    postgres = config["services"]["postgres"]
    assert postgres["image"] == "postgres:16"
    init = next(v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v)
    script = (COMPOSE_DIR / init.split(":")[0]).read_text(encoding="utf-8")
    created = set(re.findall(r"CREATE DATABASE (\w+);", script))
    assert created == {"erp", "crm", "analytics", "audit", "fleet"}


def test_hq_prometheus_scrapes_every_consumer_service() -> None:
    """Each consumer service of the compose file is a target of the consumers' scrape job,
    at its --listen port and under its own service name."""
    services = compose_config(COMPOSE_DIR / "hq.yaml")["services"]
    consumers = {
        name: s["command"][s["command"].index("--listen") + 1].rpartition(":")[2]
        for name, s in services.items()
        if is_tillstream_image(s) and s.get("command", [None])[0] == "consume"
    }
    assert set(consumers) == {"erp", "crm", "analytics", "audit", "fleet"}
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "tillstream-consumers"]
    scraped = {
        c["labels"]["service"]: target for c in job["static_configs"] for target in c["targets"]
    }
    assert scraped == {name: f"{name}:{port}" for name, port in consumers.items()}


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
    for path in [*COMPOSE_FILES, *COMPOSE_OVERRIDES]:
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
    overrides = [load_yaml_documents(o)[0] for o, base in COMPOSE_OVERRIDES.items() if base == path]
    used = {name for doc in (raw, *overrides) for name in variables_in(doc)}
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


# -- override files: used with their base file ------------------------------------------------


@pytest.mark.parametrize(("override", "base"), COMPOSE_OVERRIDES.items(), ids=lambda p: p.name)
def test_override_merges_into_a_valid_deployment(
    override: Path,
    base: Path,
    compose_schema: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """``-f BASE -f OVERRIDE``: the merged file satisfies the specification, each tillstream
    service's settings are valid with the files it mounts (the shipped examples, a folder of
    certificate files), and every file a setting names is mounted."""
    for name in ("edge.pem", "edge.key"):
        (tmp_path / name).write_text("-----BEGIN PLACEHOLDER-----\n")
    files = {"TOKENS_FILE": "./tokens.example.toml", "EDGE_TLS_DIR": str(tmp_path)}
    config = merged_config(base, override, **files)
    validator_class = jsonschema.validators.validator_for(compose_schema)
    errors = list(validator_class(compose_schema).iter_errors(config))
    assert not errors, [e.message for e in errors]
    (raw,) = load_yaml_documents(override)
    assert set(raw["services"]) <= set(config["services"]), "overrides an unknown service"
    for name in raw["services"]:
        service = config["services"][name]
        environment = {k: str(v) for k, v in service["environment"].items()}
        unknown = {k for k in environment if k.startswith("TILLSTREAM_")} - SETTINGS_VARIABLES
        assert not unknown, f"{override.name}: {name}: not settings: {unknown}"
        binds = {
            v["target"]: (COMPOSE_DIR / v["source"]).resolve()
            for v in service["volumes"]
            if isinstance(v, dict) and v["type"] == "bind"
        }
        on_host = {}  # a path in the container, read where it is mounted from
        for key, value in environment.items():
            if key.startswith("TILLSTREAM_") and value.startswith("/etc/tillstream/"):
                mount = next((m for m in binds if value == m or value.startswith(f"{m}/")), None)
                assert mount is not None, f"{override.name}: {key}={value} is not mounted"
                value = str(binds[mount]) + value[len(mount) :]
            on_host[key] = value
        settings_from(on_host, monkeypatch)  # raises SettingsError naming a bad value
        mounts = [v["target"] for v in service["volumes"] if isinstance(v, dict)]
        assert len(mounts) == len(set(mounts)), "a target mounted twice"


def test_store_tls_tokens_override_serves_https_with_till_tokens() -> None:
    override = COMPOSE_DIR / "store.tls-tokens.yaml"
    edge = merged_config(COMPOSE_DIR / "store.yaml", override)["services"]["edge"]
    environment = edge["environment"]
    assert environment["TILLSTREAM_EDGE_TOKENS"] == "/etc/tillstream/tokens.toml"
    assert environment["TILLSTREAM_EDGE_TLS_CERTFILE"].startswith("/etc/tillstream/tls/")
    assert environment["TILLSTREAM_STORE_ID"] == "S001"  # store.yaml's settings kept
    test = " ".join(edge["healthcheck"]["test"])
    assert "https://127.0.0.1:8080/healthz" in test and "http://" not in test
    assert edge["healthcheck"]["interval"] == "15s"  # the rest of the healthcheck kept
    targets = {v["target"] for v in edge["volumes"]}
    assert {"/etc/tillstream/tokens.toml", "/etc/tillstream/tls", "/srv/poslog"} <= targets
    # The example tokens file is one the edge loads; its digests match no token.
    tokens = load_tokens(COMPOSE_DIR / "tokens.example.toml")
    assert set(tokens.digests) == {"T01", "T02", "T03", "BACKOFFICE"}
    assert {d.hex().lstrip("0") for d in tokens.digests.values()} == {"1", "2", "3", "4"}
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    assert "-f deploy/compose/store.yaml -f deploy/compose/store.tls-tokens.yaml" in doc


def test_hq_env_example_publishes_plaintext_listeners_on_this_machine_only() -> None:
    """The brokers' EXTERNAL listeners and the consumers' ports speak PLAINTEXT: the example
    binds them to loopback, as its comment says; a site widens it to its private WAN."""
    example = (COMPOSE_DIR / "hq.env.example").read_text(encoding="utf-8")
    binds = dict(re.findall(r"^([A-Z_]*_BIND)=(.*)$", example, flags=re.M))
    assert binds.get("KAFKA_EXTERNAL_BIND") == "127.0.0.1", binds
    for name, value in binds.items():
        assert value in ("", "127.0.0.1"), f"{name}={value}: PLAINTEXT beyond this machine"
    said = re.search(r"published on \((\S+): this machine only\)", example)
    assert said and said[1] == binds["KAFKA_EXTERNAL_BIND"]
