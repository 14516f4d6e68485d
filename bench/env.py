"""What the benchmarks run against: a Kafka broker (started here unless
``KAFKA_BOOTSTRAP_SERVERS`` names one), a scratch directory, and PostgreSQL when available."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tillstream.core.codec import AvroCodec
from tillstream.core.registry import FileRegistry
from tillstream.core.schemas import SchemaSet
from tillstream.core.settings import Settings
from tillstream.dev.broker import LocalKafka, resolve_jars
from tillstream.dev.ports import free_port
from tillstream.dev.postgres import PostgresServer, PostgresUnavailable


@dataclass
class BenchEnv:
    quick: bool
    scratch: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="tillstream-bench-"))
    )
    settings: Settings = field(default_factory=Settings)
    libs: Path | None = None
    """Kafka's jars (for the broker and its perf tool)."""
    broker: LocalKafka | None = None
    postgres: PostgresServer | None = None
    postgres_url: str | None = None

    @property
    def rounds(self) -> int:
        return 3 if self.quick else 7

    def codec(self) -> AvroCodec:
        schemas = SchemaSet()
        return AvroCodec(FileRegistry(schemas), schemas)

    def start(self, say: Any = print) -> None:
        self.libs = resolve_jars(self.settings.cache_dir, progress=say)
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            say("bench: starting a local Kafka broker ...")
            self.broker = LocalKafka(
                data_dir=self.scratch / "kafka", libs=self.libs, port=free_port()
            )
            self.broker.start()
            bootstrap = self.broker.bootstrap
        self.settings = Settings(kafka_bootstrap_servers=bootstrap, topic_partitions=6)
        self.postgres_url = os.environ.get("POSTGRES_URL")
        if not self.postgres_url:
            try:
                self.postgres = PostgresServer(
                    Path(tempfile.mkdtemp(prefix="tillstream-bench-pg-"))
                )
                self.postgres.start()
                self.postgres_url = self.postgres.url
            except PostgresUnavailable as exc:
                say(f"bench: PostgreSQL not available, its figures are skipped ({exc})")
                self.postgres = None

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop("immediate")
            shutil.rmtree(self.postgres.root, ignore_errors=True)
        shutil.rmtree(self.scratch, ignore_errors=True)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }
