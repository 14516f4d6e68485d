"""Shared fixtures: a real Kafka broker for the whole session, settings and a codec.

Set TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS (the variable every tillstream command reads; the
older KAFKA_BOOTSTRAP_SERVERS still works) to run the suite against an existing cluster.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import create_topics, diagnose, make_consumer
from tillstream.core.registry import FileRegistry
from tillstream.core.schemas import SchemaSet
from tillstream.core.settings import Settings
from tillstream.dev.broker import LocalKafka, resolve_jars
from tillstream.dev.ports import free_port
from tillstream.dev.processes import Service, ServiceError

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def cache_dir() -> Path:
    return Path(os.environ.get("TILLSTREAM_CACHE_DIR", Path.home() / ".cache" / "tillstream"))


@pytest.fixture(scope="session")
def kafka_libs() -> Path:
    """Kafka's jars, resolved from Maven Central once and cached."""
    return resolve_jars(cache_dir(), progress=lambda _msg: None)


BOOTSTRAP_VARIABLES = ("TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS")
"""Where the suite finds an existing cluster: the commands' own variable first (so the suite,
the CLI and every service started by a test agree), then the name the suite used to read."""


def external_kafka() -> tuple[str, str] | None:
    """``(variable, bootstrap servers)`` of an existing cluster to test against, if set."""
    for variable in BOOTSTRAP_VARIABLES:
        value = os.environ.get(variable)
        if value:
            return variable, value
    return None


@pytest.fixture(scope="session")
def kafka_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Bootstrap address of a real KRaft broker on loopback, started once per session."""
    external = external_kafka()
    if external:
        variable, servers = external
        problem = asyncio.run(diagnose(Settings(kafka_bootstrap_servers=servers)))
        if problem is not None:  # say which variable pointed the suite there
            pytest.fail(f"{variable}={servers} (the cluster the tests use): {problem}")
        yield servers
        return
    libs = request.getfixturevalue("kafka_libs")
    broker = LocalKafka(data_dir=tmp_path_factory.mktemp("kafka"), libs=libs, port=free_port())
    broker.start()
    request.config.stash[_BROKER_LOG] = broker.log_path
    yield broker.bootstrap
    broker.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that fill the session broker's master-data topics with 100,000 records run
    last: the tests that read those topics whole (a full publish, a new edge's copy, a new
    ERP group) then read thousands of records, not hundreds of thousands."""
    items.sort(key=lambda item: item.get_closest_marker("fills_topics") is not None)


_BROKER_LOG = pytest.StashKey[Path]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Keep the broker log of a failed run where CI and people can find it."""
    log = session.config.stash.get(_BROKER_LOG, None)
    if session.testsfailed and log is not None and log.exists():
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log, ARTIFACTS / "kafka-broker.log")
        print(f"\nKafka broker log kept at {ARTIFACTS / 'kafka-broker.log'}")


@pytest.fixture(scope="session")
def settings(kafka_broker: str) -> Settings:
    return Settings(kafka_bootstrap_servers=kafka_broker, topic_partitions=3)


@pytest.fixture(scope="session")
async def kafka_topics(settings: Settings) -> Settings:
    """The project's topics exist on the session broker."""
    await create_topics(settings)
    return settings


@pytest.fixture(scope="session")
def schema_set() -> SchemaSet:
    return SchemaSet()


@pytest.fixture(scope="session")
def codec(schema_set: SchemaSet) -> AvroCodec:
    return AvroCodec(FileRegistry(schema_set), schema_set)


@pytest.fixture
async def consumer_factory(settings: Settings) -> AsyncIterator[Any]:
    """Makes started consumers (unique group ids) and stops them after the test."""
    started: list[AIOKafkaConsumer] = []

    async def make(*topics: str, **options: Any) -> AIOKafkaConsumer:
        options.setdefault("group_id", f"test-{uuid.uuid4().hex[:8]}")
        consumer = make_consumer(settings, *topics, **options)
        await consumer.start()
        started.append(consumer)
        return consumer

    yield make
    for consumer in started:
        await consumer.stop()


APICURIO_DIR = Path(__file__).resolve().parent / "support" / "apicurio"
APICURIO_VERSION = "2.4.2.Final"


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Confluent-compatible schema registry (Apicurio Registry, in memory).

    Built from Maven Central on the first run (about a minute) and cached; set
    SCHEMA_REGISTRY_URL to use an existing registry instead.
    """
    external = os.environ.get("SCHEMA_REGISTRY_URL")
    if external:
        yield external
        return
    home = cache_dir() / f"apicurio-{APICURIO_VERSION}"
    runner = home / "target" / "apicurio-runner-1.0-runner.jar"
    if not runner.exists():
        build = subprocess.run(
            ["bash", str(APICURIO_DIR / "build.sh"), str(home)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if build.returncode != 0:
            pytest.fail(f"building Apicurio Registry failed:\n{build.stdout}\n{build.stderr}")
    port = free_port()
    registry = Service(
        "registry",
        ["-Xmx384m", "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={port}",
         "-jar", str(runner)],
        port,
        tmp_path_factory.mktemp("registry") / "registry.log",
        ready_path="/health/ready",
        command=("java",),
        cwd=home,
        own_session=False,
    ).start()  # fmt: skip
    try:
        try:
            registry.wait_ready(90)
        except ServiceError as exc:
            pytest.fail(str(exc))
        yield f"{registry.url}/apis/ccompat/v7"
    finally:
        registry.stop(30)


@pytest.fixture
def edge_factory(kafka_broker: str, tmp_path: Path) -> Iterator[Any]:
    """Starts edge service processes (killed at the end of the test)."""
    from tests.edge_support import EdgeProcess

    started: list[EdgeProcess] = []

    def make(
        store: str,
        *,
        bootstrap: str | None = None,
        workdir: Path | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> EdgeProcess:
        work = workdir or tmp_path / f"edge-{store}"
        work.mkdir(parents=True, exist_ok=True)
        edge = EdgeProcess(store, bootstrap or kafka_broker, work, list(args or []), env)
        started.append(edge)
        return edge.start()

    yield make
    for edge in started:
        edge.kill()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a real PostgreSQL server (started for the session, or POSTGRES_URL)."""
    external = os.environ.get("POSTGRES_URL")
    if external:
        yield external
        return
    from tillstream.dev.postgres import PostgresServer, PostgresUnavailable

    # Not under pytest's tmp dir: the postgres user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="tillstream-pg-"))
    server = PostgresServer(root)
    try:
        server.start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))
    yield server.url
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each production kind: embedded SQLite and a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'consumer.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real OpenID provider (Keycloak, tests/support/keycloak/) on loopback, once per
    session: fetched from Maven Central and built into the cache on the first run."""
    from tests.oidc_support import start

    provider = start(cache_dir() / "oidc", tmp_path_factory.mktemp("oidc"))
    try:
        yield provider
    finally:
        provider.service.stop(30)
