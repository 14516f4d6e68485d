"""Stage 5: latency from edge acceptance to ERP commit at fixed offered rates.

A real edge service process (``tillstream edge run``) takes sales over HTTP, one POST every
10 ms sized to the offered rate; its forwarder publishes them to ``tillstream.sales``. The
ERP inventory service runs in this process, on its own thread and event loop, on a fresh
SQLite database whose stored offsets start at the topic's current end (so a broker with
history is skipped, not replayed). Each sale's ``occurred_at`` is set to the moment its
request is sent (it is "now" at the till), and the service notes ``commit time -
occurred_at`` for each of the bench's sales right after the transaction that applied it
committed. Both clocks are this process's.

There is no paired reference here: the figures are absolute latencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.env import BenchEnv
from bench.harness import Figure, stage_result
from bench.stages.consumer_apply import Databases, delete_topics, dlq_topic, erp_consumer, unique
from bench.workload import sales
from tillstream.core.kafka import create_topics, make_consumer
from tillstream.core.records import jsonable
from tillstream.core.settings import Settings
from tillstream.core.tasks import stop_client
from tillstream.core.topics import SALES
from tillstream.dev.ports import free_port
from tillstream.dev.processes import Service
from tillstream_consumers.runtime import state
from tillstream_consumers.runtime.applier import Applier, BatchOutcome
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.partitioning import TopicPartition
from tillstream_consumers.runtime.runner import ConsumerService, RunnerConfig

INTERVAL = 0.010
"""One request per 10 ms, sized to the offered rate."""
MAX_IN_FLIGHT = 32
WARMUP = 0.5
"""Seconds of 100 events/s before the measured rates."""
TARGET_RATE = 1_000
TARGET_P99_MS = 100.0


# -- the edge process -----------------------------------------------------------------------


def edge_service(store: str, bootstrap: str, workdir: Path) -> Service:
    """``tillstream edge run`` for one store, as the demo starts it."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    return Service(
        f"edge {store}",
        ["edge", "run", "--store", store, "--listen", f"127.0.0.1:{port}",
         "--outbox", str(workdir / "outbox.db")],
        port,
        workdir / "edge.log",
        {"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TILLSTREAM_LOG_LEVEL": "WARNING"},
    )  # fmt: skip


class LatencyService(ConsumerService):
    """Notes, for each applied sale of ``store``, commit time - occurred_at (ms)."""

    def __init__(self, *args: Any, store: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store = store
        self.mine = 0
        self.latencies: list[float] = []
        self.lock = threading.Lock()

    def batch_committed(self, outcome: BatchOutcome, started: float) -> None:
        now = time.time()  # called right after the batch's transaction committed
        ours = [
            (now - r.value["occurred_at"].timestamp()) * 1000
            for r in outcome.applied
            if r.value.get("store_id") == self.store
        ]
        if ours:
            with self.lock:
                self.latencies.extend(ours)
                self.mine += len(ours)

    def take(self) -> list[float]:
        with self.lock:
            out, self.latencies = self.latencies, []
        return out


class Threaded:
    """A consumer service on its own thread and event loop (the load generator has this one)."""

    def __init__(self, service: ConsumerService) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="bench-erp", daemon=True)

    def _main(self) -> None:
        try:
            self.loop.run_until_complete(self.service.run())
        except BaseException as exc:  # reported by the stage
            self.error = exc
        finally:
            self.loop.close()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already closed
                self.loop.call_soon_threadsafe(self.service.request_stop)
            self.thread.join(60)


async def topic_end(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    """The next offset of every partition of ``topic``."""

    kafka = make_consumer(settings, topic, group_id=None)  # subscribed: its metadata is fetched
    await kafka.start()
    try:
        partitions = kafka.partitions_for_topic(topic)
        deadline = time.monotonic() + 30
        while not partitions:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no partitions for {topic}")
            await asyncio.sleep(0.2)
            partitions = kafka.partitions_for_topic(topic)
        ends = await kafka.end_offsets([TopicPartition(topic, p) for p in sorted(partitions)])
        return {TopicPartition(tp.topic, tp.partition): int(o) for tp, o in ends.items()}
    finally:
        await stop_client(kafka)


def start_at(db_url: str, consumer: Any, codec: Any, offsets: dict[TopicPartition, int]) -> None:
    """Migrate a fresh database and store ``offsets`` as the consumer's progress, so the
    service starts where the topic ends now."""
    db = Database(db_url)
    try:
        Applier(consumer, db, codec.encode).prepare()
        with db.transaction():
            state.store_offsets(db, consumer.name, offsets, {})
    finally:
        db.close()


# -- offering sales ---------------------------------------------------------------------------


@dataclass
class Offered:
    sent: int = 0
    accepted: int = 0
    failed: int = 0
    first: float = 0.0
    last: float = 0.0

    @property
    def rate(self) -> float:
        return self.accepted / max(self.last - self.first, 1e-9)


async def offer(
    client: httpx.AsyncClient,
    url: str,
    templates: list[dict[str, Any]],
    rate: int,
    seconds: float,
) -> Offered:
    """POST sales at ``rate`` events/s for ``seconds``: one request per INTERVAL."""
    per_request = max(1, round(rate * INTERVAL))
    interval = per_request / rate
    requests = max(1, round(seconds / interval))
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    out = Offered()
    cursor = 0

    async def post(events: list[dict[str, Any]]) -> None:
        async with gate:
            now = datetime.now(UTC)
            at, day = now.isoformat(), now.date().isoformat()
            body = json.dumps(
                [{**e, "event_id": str(uuid.uuid4()), "occurred_at": at, "business_day": day}
                 for e in events]
            )  # fmt: skip
            out.sent += len(events)
            try:
                response = await client.post(
                    url, content=body, headers={"content-type": "application/json"}
                )
            except httpx.HTTPError:
                out.failed += len(events)
                return
            if response.status_code == 202:
                out.accepted += len(events)
            else:
                out.failed += len(events)
            out.last = time.perf_counter()

    tasks = []
    out.first = started = time.perf_counter()
    for i in range(requests):
        delay = started + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        events = [templates[(cursor + k) % len(templates)] for k in range(per_request)]
        cursor += per_request
        tasks.append(asyncio.create_task(post(events)))
    await asyncio.gather(*tasks)
    return out


async def drained(erp: Threaded, service: LatencyService, count: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while service.mine < count:
        if erp.error is not None or not erp.thread.is_alive():
            raise RuntimeError(f"the ERP service stopped: {erp.error!r}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"ERP applied {service.mine} of {count} sales in {limit}s")
        await asyncio.sleep(0.02)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


# -- the stage --------------------------------------------------------------------------------


async def run(env: BenchEnv) -> dict[str, Any]:
    rates = (100, 1_000) if env.quick else (100, 1_000, 5_000)
    seconds = 3.0 if env.quick else 10.0
    settings = env.settings
    store = unique("BE2E").upper()
    group = unique("bench-erp-e2e")
    dbs = Databases(env)
    db_url = dbs.new("sqlite", "e2e")
    templates = [
        {k: v for k, v in jsonable({**s, "store_id": store}).items()}
        | {"type": "sale"}
        for s in sales(200, stores=1)
    ]  # fmt: skip

    await create_topics(settings, (SALES,))
    consumer = erp_consumer(settings, group, (SALES.name,))
    service = LatencyService(
        consumer, settings, RunnerConfig(db_url=db_url, batch_size=500), store=store
    )
    start_at(db_url, consumer, service.codec, await topic_end(settings, SALES.name))
    edge = edge_service(store, settings.kafka_bootstrap_servers, env.scratch / "e2e-edge")
    erp = Threaded(service)
    figures: dict[str, Figure] = {}
    notes = []
    try:
        await asyncio.to_thread(lambda: edge.start().wait_ready(30))
        erp.start()
        limits = httpx.Limits(
            max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT
        )
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            url = f"{edge.url}/v1/events"
            # Warm up: the edge's producer connects on its first batch, the service joins.
            warm = await offer(client, url, templates, 100, WARMUP)
            await drained(erp, service, warm.accepted, 60)
            service.take()
            total = warm.accepted
            for rate in rates:
                offered = await offer(client, url, templates, rate, seconds)
                total += offered.accepted
                await drained(erp, service, total, 120)
                lat = service.take()
                figures[f"{rate}/s p50"] = Figure("ms", [statistics.median(lat)])
                figures[f"{rate}/s p99"] = Figure("ms", [percentile(lat, 99)])
                figures[f"{rate}/s max"] = Figure("ms", [max(lat)])
                figures[f"{rate}/s achieved"] = Figure("events/s", [offered.rate])
                if offered.failed:
                    notes.append(f"{offered.failed} of {offered.sent} refused at {rate}/s")
    finally:
        erp.stop()
        await asyncio.to_thread(edge.stop)
        dbs.drop(db_url)
        await delete_topics(settings, [dlq_topic(group)])
    p99 = figures.get(f"{TARGET_RATE}/s p99")
    met = p99 is not None and p99.median < TARGET_P99_MS
    return stage_result(
        figures=figures,
        reference_name="none (absolute latencies)",
        reference={},
        ratios={},
        target=f"p99 under {TARGET_P99_MS:.0f} ms at {TARGET_RATE:,} events/s",
        met=met,
        notes=(
            f"edge process (HTTP, one POST per {INTERVAL * 1000:.0f} ms sized to the rate, "
            f"<= {MAX_IN_FLIGHT} in flight) -> outbox -> forwarder -> Kafka -> ERP service "
            f"(in-process thread, SQLite, batch_size 500); {seconds:.0f} s per rate after a "
            "1 s warm-up; latency = ERP commit - occurred_at (set when the request is sent); "
            "one run per rate, so min = median = max. No paired reference. " + "; ".join(notes)
        ).strip(),
    )
