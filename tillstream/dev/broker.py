"""A real Apache Kafka broker (KRaft mode) on loopback, for development, demos and tests.

The broker jars of a pinned Kafka version are resolved from Maven Central with Maven into
a cache directory once; later runs start in seconds. One process is both controller and
broker (``process.roles=broker,controller``), as Kafka's docs describe for a dev node.

Besides its PLAINTEXT listener (which the node also uses internally), a broker can have
secured client listeners (:class:`Listener`: TLS, mTLS, SASL/SCRAM), SCRAM users created
when its storage is formatted, and ACL authorization, for security tests.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tillstream.dev.brokerlock import DataDirLock, Holder, kafka_holder
from tillstream.dev.ports import free_port

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


class DataDirInUse(DevKafkaError):
    """Another broker already runs on this data directory (nothing of it was touched)."""

    def __init__(self, data_dir: Path, holder: Holder) -> None:
        self.data_dir, self.pid, self.port = data_dir, holder.pid, holder.port
        pid = f"pid {holder.pid}" if holder.pid else "pid unknown"
        port = f"127.0.0.1:{holder.port}" if holder.port else "port unknown"
        super().__init__(f"a Kafka broker is already running on {data_dir} ({pid}, {port})")


def check_java() -> None:
    """Java 17+ must be on PATH (to run Kafka)."""
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


def check_toolchain() -> None:
    """Java 17+ and Maven must be on PATH (to fetch the jars and run Kafka)."""
    check_java()
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
    """A random base64 UUID, as ``kafka-storage random-uuid`` makes: never starting with
    ``-``, which the storage tool would take for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SCRAM_MECHANISM = "SCRAM-SHA-512"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
INTERNAL_PRINCIPAL = "User:ANONYMOUS"
"""Who the node's own PLAINTEXT and CONTROLLER connections authenticate as."""


@dataclass(frozen=True)
class Listener:
    """A client listener on 127.0.0.1 besides the broker's own PLAINTEXT one."""

    name: str
    """Listener name, e.g. ``SASL_SSL`` or ``MTLS`` (not ``PLAINTEXT`` or ``CONTROLLER``)."""
    protocol: SecurityProtocol
    port: int = field(default_factory=lambda: free_port())
    config: Mapping[str, str] = field(default_factory=dict)
    """Settings of this listener only, written as ``listener.name.<name>.<key>``."""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def properties(self) -> dict[str, str]:
        prefix = f"listener.name.{self.name.lower()}."
        return {prefix + key: value for key, value in self.config.items()}


def pem_tls(
    keystore: Path, truststore: Path | None = None, *, client_auth: str = "none"
) -> dict[str, str]:
    """Listener config for TLS from PEM files (Kafka reads PEM since 2.7).

    ``keystore`` holds the broker's unencrypted PKCS#8 key and its certificate chain;
    ``truststore`` the CAs of client certificates, with ``client_auth="required"`` (mTLS).
    """
    config = {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.client.auth": client_auth,
        # A client certificate's CN is its principal (User:store-S1), not the whole DN.
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+).*$/$1/,DEFAULT",
    }
    if truststore is not None:
        config.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": str(truststore)})
    return config


def sasl_scram(mechanism: str = SCRAM_MECHANISM) -> dict[str, str]:
    """Listener config for SASL/SCRAM; credentials live in the cluster metadata."""
    return {
        "sasl.enabled.mechanisms": mechanism,
        f"{mechanism.lower()}.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
    }


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
    listeners: Sequence[Listener] = ()
    """Secured client listeners besides PLAINTEXT (which stays, for the node itself)."""
    scram_users: Mapping[str, str] = field(default_factory=dict)
    """User name -> password, created as SCRAM-SHA-512 credentials when storage is formatted
    (first start only: an existing data directory keeps its users)."""
    authorizer: bool = False
    """Enforce ACLs (StandardAuthorizer): what no ACL allows is denied."""
    super_users: Sequence[str] = ()
    """Principals (``User:admin``) that ACLs do not restrict; the node itself always is one."""
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _lock: DataDirLock = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._lock = DataDirLock(self.data_dir)
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
        client = [("PLAINTEXT", "PLAINTEXT", self.port)]
        client += [(lst.name, lst.protocol, lst.port) for lst in self.listeners]
        advertised = ",".join(f"{name}://127.0.0.1:{port}" for name, _, port in client)
        protocols = [f"{name}:{protocol}" for name, protocol, _ in client]
        config = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": f"{advertised},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join([*protocols, "CONTROLLER:PLAINTEXT"]),
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
        for listener in self.listeners:
            config.update(listener.properties())
        if self.authorizer:
            config["authorizer.class.name"] = STANDARD_AUTHORIZER
            config["super.users"] = ";".join(dict.fromkeys([INTERNAL_PRINCIPAL, *self.super_users]))
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

    def preflight(self) -> None:
        """What would stop a start, checked before anything is said or written: Java, the
        data directory (claimed: :class:`DataDirInUse` if another broker runs on it) and the
        port.

        Raises:
            DevKafkaError: the message says what to do.
        """
        check_java()
        self._claim_data_dir()
        if _port_open(self.port):  # Kafka would only say "exited with code 1" later
            raise DevKafkaError(
                f"127.0.0.1:{self.port} is already in use by another process; choose another "
                "port (tillstream dev kafka --port N)"
            )

    def prepare(self) -> None:
        """Write the config and format storage on first use (keeps existing data).

        Raises:
            DataDirInUse: another broker runs on the data directory; nothing was written.
        """
        self._claim_data_dir()
        props = self.data_dir / "server.properties"
        props.write_text("".join(f"{k}={v}\n" for k, v in self.config().items()))
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2)
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        cluster_id = self._cluster_id()
        scram = [
            arg
            for user, password in self.scram_users.items()
            for arg in ("--add-scram", _scram_credential(user, password))
        ]
        result = subprocess.run(
            self._java(
                "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), *scram
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DevKafkaError(f"formatting Kafka storage failed: {result.stdout}{result.stderr}")

    def _claim_data_dir(self) -> None:
        """Hold the data directory's lock, unless another broker runs on it."""
        holder = self._lock.acquire()
        if holder is None and not self.running():
            holder = kafka_holder(self.data_dir)
            if holder is not None:
                self._lock.release()
        if holder is not None:
            raise DataDirInUse(self.data_dir, holder)
        if not self.running():  # ours until the broker's own pid is known (start)
            self._lock.record(os.getpid(), self.port)

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
        self.preflight()
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
        self._lock.record(self.process.pid, self.port)
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
        """Controlled shutdown; killed if it does not finish within ``timeout``. Gives up
        the data directory (a crash by :meth:`kill` keeps it, for a restart)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._lock.release()

    def kill(self) -> None:
        """SIGKILL: a crash, for fault-injection tests."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _scram_credential(user: str, password: str) -> str:
    """StorageTool's ``--add-scram`` value; quoted, so commas and brackets are safe."""
    if '"' in user + password:
        raise DevKafkaError(f"SCRAM user {user!r}: names and passwords cannot contain '\"'")
    return f'{SCRAM_MECHANISM}=[name="{user}",password="{password}"]'


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
