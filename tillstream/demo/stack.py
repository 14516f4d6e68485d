"""Standing up the demo's services: a local broker (unless a cluster is given), the topics,
one edge per store with its POSLog drop folder, and the ERP, CRM, analytics and sales-audit
consumers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import create_topics
from tillstream.core.registry import registry_from_settings
from tillstream.core.settings import Settings
from tillstream.dev.broker import LocalKafka, resolve_jars
from tillstream.dev.ports import free_port
from tillstream.dev.processes import Service
from tillstream.masterdata.publish import ITEM_KIND, PRICE_KIND, publish_file
from tillstream.simulate.catalog import items_csv, prices_csv

CONSUMERS = (("erp", "sqlite:///{dir}/erp.db"), ("crm", "sqlite:///{dir}/crm.db"),
             ("analytics", "duckdb:///{dir}/analytics.duckdb"),
             ("audit", "sqlite:///{dir}/audit.db"))  # fmt: skip


@dataclass
class DemoStack:
    workdir: Path
    stores: list[str]
    bootstrap: str | None = None
    broker: LocalKafka | None = None
    edges: dict[str, Service] = field(default_factory=dict)
    consumers: dict[str, Service] = field(default_factory=dict)
    settings: Settings | None = None
    """The settings the stack runs with (its broker), once started."""

    @property
    def services(self) -> list[Service]:
        return [*self.edges.values(), *self.consumers.values()]

    def drop_folder(self, store: str) -> Path:
        return self.workdir / store / "poslog"

    def start(self, settings: Settings, say: Callable[[str], None]) -> None:
        if self.bootstrap is None:
            libs = resolve_jars(settings.cache_dir, progress=say)
            self.broker = LocalKafka(data_dir=self.workdir / "kafka", libs=libs, port=free_port())
            say("starting a local Kafka broker (KRaft) ...")
            self.broker.start()
            self.bootstrap = self.broker.bootstrap
            say(f"Kafka ready at {self.bootstrap}")
        cfg = settings.model_copy(
            update={"kafka_bootstrap_servers": self.bootstrap, "topic_partitions": 3}
        )
        self.settings = cfg
        asyncio.run(create_topics(cfg))
        say("topics created")
        env = {"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "TILLSTREAM_LOG_LEVEL": "INFO"}
        for store in self.stores:
            folder = self.drop_folder(store)
            folder.mkdir(parents=True, exist_ok=True)
            port = free_port()
            self.edges[store] = Service(
                f"edge {store}",
                ["edge", "run", "--store", store, "--listen", f"127.0.0.1:{port}",
                 "--outbox", str(self.workdir / store / "outbox.db"), "--poslog-dir", str(folder)],
                port, self.workdir / store / "edge.log", env,
            ).start()  # fmt: skip
        self._publish_master_data(cfg)
        for name, url in CONSUMERS:
            port = free_port()
            self.consumers[name] = Service(
                name,
                ["consume", name, "--db", url.format(dir=self.workdir),
                 "--listen", f"127.0.0.1:{port}"],
                port, self.workdir / f"{name}.log", env,
            ).start()  # fmt: skip
        for service in self.services:
            say(f"waiting for {service.name} ...")
            service.wait_ready()

    def _publish_master_data(self, cfg: Settings) -> None:
        """The demo's catalog on tillstream.items (reorder points, so low stock shows up)
        and its chain-wide list prices on tillstream.prices, as head office publishes them."""
        codec = AvroCodec(registry_from_settings(cfg))

        async def publish() -> None:
            for kind, text in ((ITEM_KIND, items_csv()), (PRICE_KIND, prices_csv())):
                csv_path = self.workdir / f"{kind.name}.csv"
                csv_path.write_text(text)
                await publish_file(cfg, codec, kind, csv_path)

        asyncio.run(publish())

    def stop(self, say: Callable[[str], None]) -> None:
        for service in self.services:  # edges first: they drain their outboxes into Kafka
            say(f"stopping {service.name} ...")
            service.stop()
        if self.broker is not None:
            say("stopping Kafka ...")
            self.broker.stop()
