"""Stage 4: the ERP inventory service applying 5-line sales to SQLite (and PostgreSQL) vs a bare
``aiokafka`` consumer decoding the same records.

Each database is measured twice: on an empty one, and on one where every (store, sku) was
counted after the sales happened, so every sale is read after a later count (a consumer that
catches up reads the stock-movement topic ahead of sales). Those sales correct the counts'
adjustments instead of moving stock (docs/erp.md, "Counts").

Both read a topic of the bench's own (created for this stage, deleted after it), each round
under a fresh consumer group and, for the service, on a fresh database, so every round applies
exactly the N records published once. The clock starts when the first batch arrives (group
join and database set-up are left out on both sides) and stops when the N-th record has been
applied (ours: its transaction committed) or decoded (reference).

The helpers here (topics, databases, a measured service) are shared with ``end_to_end`` and
``growth``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from bench.env import BenchEnv
from bench.harness import Figure, paired, ratio, stage_result
from bench.workload import sales
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_admin, make_consumer, make_producer
from tillstream.core.registry import registry_from_settings
from tillstream.core.settings import Settings
from tillstream.core.topics import STOCK_MOVEMENTS, store_key
from tillstream.dev.samples import sample_stock_movement
from tillstream_consumers.erp import ErpInventory
from tillstream_consumers.runtime import deadletter
from tillstream_consumers.runtime.api import Record
from tillstream_consumers.runtime.applier import Applier, BatchOutcome
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.partitioning import TopicPartition
from tillstream_consumers.runtime.runner import ConsumerService, RunnerConfig

TARGET = 0.3
APPLY_TIMEOUT = 300.0


# -- shared helpers -------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_topic(settings: Settings, name: str) -> None:
    """A topic of ``settings.topic_partitions`` partitions, for the bench alone."""
    admin = make_admin(settings)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=settings.topic_partitions,
                        replication_factor=settings.topic_replication_factor,
                    )
                ]
            )
        # Wait until the topic's metadata has reached the broker (fresh topics take a moment).
        deadline = time.monotonic() + 30
        while name not in set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} not created")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def delete_topics(settings: Settings, names: Iterable[str]) -> None:
    """Best effort: the bench leaves no topics behind on a shared broker."""
    wanted = sorted(set(names))
    if not wanted:
        return
    admin = make_admin(settings)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        doomed = [n for n in wanted if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    except (KafkaError, OSError, TimeoutError):
        pass
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def dlq_topic(group: str) -> str:
    """The dead-letter topic a consumer service of group ``group`` creates at start-up."""
    return deadletter.topic_for(group).name


async def publish_sales(
    settings: Settings, codec: AvroCodec, topic: str, records: list[dict[str, Any]]
) -> None:
    """Publish sale records to ``topic`` as the edge does (keyed by store)."""
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, codec.encode("sale", r), key=store_key(r["store_id"]))
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def erp_consumer(settings: Settings, name: str, topics: tuple[str, ...]) -> ErpInventory:
    """The ERP inventory service under consumer group ``name``, reading ``topics``."""
    grouped = ErpInventory.in_group(name)  # its migrations stay the ERP's own
    cls = type("BenchErpInventory", (grouped,), {"topics": topics})
    return cast(ErpInventory, cls(settings))


def service_codec(settings: Settings) -> AvroCodec:
    return AvroCodec(registry_from_settings(settings))


class MeasuredService(ConsumerService):
    """A consumer service that notes when its first batch arrived and when ``target`` records
    had been applied (right after that batch's transaction committed)."""

    def __init__(self, *args: Any, target: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target = target
        self.first: float | None = None
        self.finished: float | None = None
        self.done = asyncio.Event()

    def batch_committed(self, outcome: BatchOutcome, started: float) -> None:
        if self.first is None:
            self.first = started
        if self.finished is None and self.applied >= self.target:
            self.finished = time.perf_counter()
            self.done.set()


async def apply_rate(service: MeasuredService, limit: float = APPLY_TIMEOUT) -> float:
    """Run ``service`` until it has applied its target; events/s from its first batch."""
    task = asyncio.create_task(service.run())
    try:
        waiter = asyncio.create_task(service.done.wait())
        finished, _ = await asyncio.wait(
            {task, waiter}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if task in finished:
            task.result()  # raises what stopped it
            raise RuntimeError(f"{service.name} stopped after {service.applied} records")
        if not service.done.is_set():
            raise RuntimeError(
                f"{service.name} applied {service.applied} of {service.target} in {limit}s"
            )
    finally:
        service.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=60)
    assert service.first is not None
    assert service.finished is not None
    return service.target / max(service.finished - service.first, 1e-9)


@dataclass
class Databases:
    """Fresh, empty databases per round: SQLite files in the scratch directory, PostgreSQL
    databases on the bench's server (dropped by :meth:`drop`)."""

    env: BenchEnv

    def new(self, kind: str, tag: str) -> str:
        name = unique(f"bench_{tag}").replace("-", "_")
        if kind == "sqlite":
            return f"sqlite:///{self.env.scratch / (name + '.db')}"
        assert self.env.postgres_url is not None
        self._admin(f'CREATE DATABASE "{name}"')
        parts = urlsplit(self.env.postgres_url)
        return urlunsplit(parts._replace(path="/" + name))

    def drop(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.remove(path + suffix)
            return
        name = urlsplit(url).path.lstrip("/")
        with contextlib.suppress(Exception):
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        import psycopg

        assert self.env.postgres_url is not None
        with psycopg.connect(self.env.postgres_url, autocommit=True) as conn:
            conn.execute(sql.encode())

    def kinds(self) -> list[str]:
        return ["sqlite", "postgresql"] if self.env.postgres_url else ["sqlite"]


async def bare_decode_rate(
    settings: Settings,
    codec: AvroCodec,
    topic: str | tuple[str, ...],
    count: int,
    *,
    batch_size: int = 500,
) -> float:
    """A bare aiokafka consumer (the runtime's consumer settings, a fresh group) decoding
    ``count`` records of ``topic`` (or of several topics); events/s from its first batch."""
    topics = (topic,) if isinstance(topic, str) else topic
    kafka = make_consumer(settings, *topics, group_id=unique("bench-bare"))
    await kafka.start()
    try:
        seen = 0
        first: float | None = None
        deadline = time.monotonic() + APPLY_TIMEOUT
        while seen < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"bare consumer read {seen} of {count}")
            batch = await kafka.getmany(timeout_ms=500, max_records=batch_size)
            for messages in batch.values():
                if first is None and messages:
                    first = time.perf_counter()
                for msg in messages:
                    codec.decode(msg.value)
                    seen += 1
        assert first is not None
        return count / max(time.perf_counter() - first, 1e-9)
    finally:
        await kafka.stop()


def count_everything_later(settings: Settings, url: str, events: list[dict[str, Any]]) -> None:
    """Book a count of every (store, sku) of ``events``, an hour after the last of them."""
    keys = sorted({(e["store_id"], line["sku"]) for e in events for line in e["lines"]})
    at = max(e["occurred_at"] for e in events) + timedelta(hours=1)
    counts = []
    for offset, (store, sku) in enumerate(keys):
        value = sample_stock_movement(
            store, at=at, sku=sku, quantity=100, quantity_type="COUNT", reason="COUNTED"
        )
        counts.append(
            Record(
                STOCK_MOVEMENTS.name, 0, offset, store_key(store), "stock_movement", dict(value), 0
            )
        )
    db = Database(url)
    try:
        applier = Applier(ErpInventory(settings), db, service_codec(settings).encode)
        applier.prepare()
        applier.apply(counts, {TopicPartition(STOCK_MOVEMENTS.name, 0): len(counts)})
    finally:
        db.close()


# -- the stage ------------------------------------------------------------------------------


async def run(env: BenchEnv) -> dict[str, Any]:
    count = 2_000 if env.quick else 20_000
    settings = env.settings
    codec = env.codec()
    topic = unique("bench.consumer-apply")
    topics = [topic]
    dbs = Databases(env)
    await create_topic(settings, topic)
    try:
        events = sales(count)
        await publish_sales(settings, codec, topic, events)
        figures: dict[str, Figure] = {}
        reference: dict[str, Figure] = {}
        ratios: dict[str, dict[str, Any]] = {}
        for kind, counted in [(k, c) for k in dbs.kinds() for c in (False, True)]:

            async def ours(kind: str = kind, counted: bool = counted) -> float:
                group = unique(f"bench-erp-apply-{kind}")
                topics.append(dlq_topic(group))
                url = dbs.new(kind, "apply")
                try:
                    if counted:
                        count_everything_later(settings, url, events)
                    service = MeasuredService(
                        erp_consumer(settings, group, (topic,)),
                        settings,
                        RunnerConfig(db_url=url, batch_size=500),
                        target=count,
                    )
                    return await apply_rate(service)
                finally:
                    dbs.drop(url)

            async def bare() -> float:
                return await bare_decode_rate(settings, service_codec(settings), topic, count)

            mine, theirs = await paired(ours, bare, rounds=env.rounds, unit="events/s")
            name = f"{kind}, read after a later count" if counted else kind
            figures[name] = mine
            reference[name] = theirs
            ratios[name] = ratio(mine, theirs)
    finally:
        await delete_topics(settings, topics)
    met = all(r["median"] is not None and r["median"] >= TARGET for r in ratios.values())
    notes = (
        f"{count} sales of 5 lines on a topic of the bench's own ({settings.topic_partitions} "
        "partitions), batch_size 500; fresh group and database per round; timed from the first "
        "batch to the last commit (ours) or decode (reference). 'Read after a later count': "
        "every (store, sku) counted an hour after the sales, before the service starts."
    )
    if not env.postgres_url:
        notes += " PostgreSQL not available: its figure is skipped."
    return stage_result(
        figures=figures,
        reference_name="bare AIOKafkaConsumer (same settings, fresh group) + codec.decode",
        reference=reference,
        ratios=ratios,
        target=f"at least {TARGET} of the bare consumer's rate",
        met=met,
        notes=notes,
    )
