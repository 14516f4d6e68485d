"""A real Apache Kafka broker (KRaft mode) on loopback, for development, demos and tests.

The broker jars of a pinned Kafka version are resolved from Maven Central with Maven into
a cache directory once; later runs start in seconds. One process is both controller and
broker (``process.roles=broker,controller``), as Kafka's docs describe for a dev node.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"  # the log4j2 that Kafka 4.1.1 depends on
SCALA_VERSION = "2.13"
_READY_LINE = "Kafka Server started"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.tillstream</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <!-- Kafka logs through SLF4J 1.7; this binds it to the log4j2 that Kafka already ships. -->
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""

_HOW_TO_GET = (
    "Install it (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless maven`), or skip the "
    "local broker and point tillstream at an existing cluster with "
    "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS=host:port."
)


class DevKafkaError(RuntimeError):
    """The local broker cannot be set up or started; the message says what to do."""


def check_toolchain() -> None:
    """Java 17+ and Maven must be on PATH."""
    java = shutil.which("java")
    if java is None:
        raise DevKafkaError(
            f"Java 17 or newer is needed to run Kafka and was not found. {_HOW_TO_GET}"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', out.stderr + out.stdout)
    if match is None or int(match.group(1)) < 17:
        found = match.group(1) if match else "unknown"
        raise DevKafkaError(
            f"Kafka {KAFKA_VERSION} needs Java 17 or newer; found {found}. {_HOW_TO_GET}"
        )
    if shutil.which("mvn") is None:
        raise DevKafkaError(
            f"Maven is needed to fetch the Kafka jars and was not found. {_HOW_TO_GET}"
        )


def resolve_jars(cache_dir: Path, progress: Callable[[str], None] = print) -> Path:
    """The directory of Kafka's jars, fetching them with Maven on the first call."""
    home = cache_dir / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    done = home / ".resolved"
    if done.exists():
        return libs
    check_toolchain()
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(
        _POM.format(kafka=KAFKA_VERSION, scala=SCALA_VERSION, log4j=LOG4J_VERSION)
    )
    progress(
        f"Resolving Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} (first run only)"
    )
    tmp = home / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    command = [
        "mvn",
        "-B",
        "-f",
        str(home / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    log_path = home / "maven.log"
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as mvn,
    ):
        assert mvn.stdout is not None
        fetched = 0
        for line in mvn.stdout:
            log.write(line)
            if line.startswith("Downloaded from"):
                fetched += 1
                if fetched % 25 == 0:
                    progress(f"  ... {fetched} artifacts downloaded")
    if mvn.returncode != 0:
        raise DevKafkaError(f"Maven could not resolve the Kafka jars; see {log_path}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    done.touch()
    progress(f"  Kafka {KAFKA_VERSION}: {len(list(libs.glob('*.jar')))} jars ready")
    return libs


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalKafka:
    """One combined broker+controller KRaft node on 127.0.0.1."""

    data_dir: Path
    libs: Path
    port: int = 9092
    controller_port: int = 0
    node_id: int = 1
    voters: str = ""
    """``id@host:port`` of every controller; empty for a single node."""
    extra_config: Mapping[str, str] = field(default_factory=dict)
    cluster_id: str = ""
    """Shared by every node of a cluster; a single node makes its own."""
    heap: str = "512m"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.controller_port:
            self.controller_port = free_port()
        if not self.voters:
            self.voters = f"{self.node_id}@127.0.0.1:{self.controller_port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    def config(self) -> dict[str, str]:
        replicas = str(min(3, self.voters.count("@")))
        config = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "auto.create.topics.enable": "false",
            "num.partitions": "3",
            # Internal topics sized for a dev node: few partitions start fast.
            "offsets.topic.num.partitions": "6",
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.num.partitions": "6",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "unclean.leader.election.enable": "false",
        }
        config.update(self.extra_config)
        return config

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def prepare(self) -> None:
        """Write the config and format storage on first use (keeps existing data)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text("".join(f"{k}={v}\n" for k, v in self.config().items()))
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2)
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        cluster_id = self._cluster_id()
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DevKafkaError(f"formatting Kafka storage failed: {result.stdout}{result.stderr}")

    def _cluster_id(self) -> str:
        """The configured cluster id, or one kept beside the data (base64 UUID, as Kafka wants)."""
        if self.cluster_id:
            return self.cluster_id
        id_file = self.data_dir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(new_cluster_id())
        return id_file.read_text().strip()

    def start(self, timeout: float = 90.0) -> None:
        """Start the broker and wait until it serves requests."""
        self.prepare()
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(self.data_dir / "server.properties")),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready(timeout, log_offset)

    def _wait_ready(self, timeout: float, log_offset: int) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise DevKafkaError(
                    f"Kafka exited with code {self.process.returncode}; last lines of "
                    f"{self.log_path}:\n{self.tail_log()}"
                )
            with self.log_path.open("rb") as log:
                log.seek(log_offset)
                started = _READY_LINE.encode() in log.read()
            if started and _port_open(self.port):
                return
            time.sleep(0.2)
        raise DevKafkaError(f"Kafka did not start within {timeout:.0f}s; see {self.log_path}")

    def tail_log(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown; killed if it does not finish within ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: a crash, for fault-injection tests."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
