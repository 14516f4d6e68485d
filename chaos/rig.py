"""Everything a chaos run starts: the Kafka cluster, PostgreSQL, one edge per store and the
head-office consumers (two ERP instances in one group, CRM, analytics, the sales audit, the
fleet service), as processes started the way operators start them, so they can be killed
the way machines die."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from chaos.cluster import Cluster
from chaos.fleet import Outage, Watch
from chaos.plan import Plan
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import create_topics
from tillstream.core.registry import registry_from_settings
from tillstream.core.settings import Settings
from tillstream.dev.ports import free_port
from tillstream.dev.postgres import PostgresServer
from tillstream.dev.processes import Service
from tillstream.masterdata.publish import ITEM_KIND, publish_file
from tillstream.simulate.catalog import items_csv

PARTITIONS = 6
DATABASES = ("erp", "crm", "analytics", "audit", "fleet")
OFFLINE_STORE_INDEX = -1
"""The last store reaches Kafka through the proxies, so it can be taken offline."""


@dataclass
class Rig:
    workdir: Path
    libs: Path
    plan: Plan
    watch: Watch
    """The edges' heartbeat and when the fleet service calls one silent."""
    say: Callable[[str], None] = print
    cluster: Cluster = field(init=False)
    postgres: PostgresServer = field(init=False)
    edges: dict[str, Service] = field(default_factory=dict)
    consumers: dict[str, Service] = field(default_factory=dict)
    outages: list[Outage] = field(default_factory=list)
    """The edges the faults killed or cut off, and when: what the fleet service must see."""

    def __post_init__(self) -> None:
        self.cluster = Cluster(self.workdir / "kafka", self.libs)
        # Beside the work directory, not in it: as root, PostgreSQL runs as ``postgres``,
        # which must reach its data directory through directories only root may enter.
        self.postgres = PostgresServer(Path(tempfile.mkdtemp(prefix="tillstream-chaos-pg-")))

    @property
    def settings(self) -> Settings:
        return Settings(
            kafka_bootstrap_servers=self.cluster.bootstrap,
            topic_partitions=PARTITIONS,
            topic_replication_factor=3,
            topic_min_insync_replicas=2,
        )

    @property
    def offline_store(self) -> str:
        return self.plan.stores[OFFLINE_STORE_INDEX]

    def db_url(self, name: str) -> str:
        return self.postgres.url.rsplit("/", 1)[0] + f"/{name}"

    def start(self) -> None:
        self.say(f"chaos: starting a {self.cluster.size}-node KRaft cluster ...")
        self.cluster.start()
        asyncio.run(create_topics(self.settings))
        self.say("chaos: starting PostgreSQL ...")
        self.postgres.start()
        with psycopg.connect(self.postgres.url, autocommit=True) as conn:
            for name in DATABASES:
                conn.execute(f"CREATE DATABASE {name}")
        self._load_item_master()
        for store in self.plan.stores:
            self.edges[store] = self._edge(store).start()
        for name, kind in (("erp-1", "erp"), ("erp-2", "erp"), ("crm", "crm"),
                           ("analytics", "analytics"), ("audit", "audit"),
                           ("fleet", "fleet")):  # fmt: skip
            self.consumers[name] = self.consumer_service(name, kind).start()
        for service in [*self.edges.values(), *self.consumers.values()]:
            service.wait_ready(120)
        self.say(
            f"chaos: {len(self.edges)} edges and {len(self.consumers)} consumers ready "
            f"(workdir {self.workdir})"
        )

    def _env(self, bootstrap: str) -> dict[str, str]:
        return {
            "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TILLSTREAM_TOPIC_PARTITIONS": str(PARTITIONS),
            "TILLSTREAM_TOPIC_REPLICATION_FACTOR": "3",
            "TILLSTREAM_TOPIC_MIN_INSYNC_REPLICAS": "2",
            "TILLSTREAM_LOG_LEVEL": "INFO",
            # The edges report, and the fleet service calls them silent, within the run.
            "TILLSTREAM_EDGE_HEARTBEAT_S": str(self.watch.heartbeat_s),
            "TILLSTREAM_FLEET_SILENT_HEARTBEATS": str(self.watch.silent_heartbeats),
        }

    def _edge(self, store: str) -> Service:
        bootstrap = (
            self.cluster.store_bootstrap if store == self.offline_store else self.cluster.bootstrap
        )
        port = free_port()
        home = self.workdir / "edges" / store
        home.mkdir(parents=True, exist_ok=True)
        return Service(
            f"edge {store}",
            ["edge", "run", "--store", store, "--listen", f"127.0.0.1:{port}",
             "--outbox", str(home / "outbox.db")],
            port, home / "edge.log", self._env(bootstrap),
            ready_path="/healthz",  # the cut-off store's edge takes sales while Kafka is away
        )  # fmt: skip

    def consumer_service(self, name: str, kind: str) -> Service:
        """A consumer process (not started yet): ``kind`` is erp, crm, analytics, audit or
        fleet."""
        port = free_port()
        return Service(
            name,
            ["consume", kind, "--db", self.db_url(kind), "--listen", f"127.0.0.1:{port}"],
            port, self.workdir / f"{name}.log", self._env(self.cluster.bootstrap),
        )  # fmt: skip

    def _load_item_master(self) -> None:
        """The demo catalog on tillstream.items: its reorder points make the ERP publish
        reorder suggestions."""
        csv_path = self.workdir / "items.csv"
        csv_path.write_text(items_csv())
        codec = AvroCodec(registry_from_settings(self.settings))
        asyncio.run(publish_file(self.settings, codec, ITEM_KIND, csv_path))

    def restart(self, service: Service) -> None:
        """Start a stopped or killed service again, on the same port and data."""
        service.proc = None
        service.start()
        service.wait_ready(120)

    def stop(self) -> None:
        with ThreadPoolExecutor(8) as pool:  # each waits on its own process: together
            list(pool.map(Service.stop, [*self.edges.values(), *self.consumers.values()]))
        self.cluster.stop()
        self.postgres.stop("immediate")
        shutil.rmtree(self.postgres.root, ignore_errors=True)
