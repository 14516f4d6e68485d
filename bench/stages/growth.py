"""Stage 7: does the ERP's cost grow with history, and does it scale out?

(a) The ERP inventory service applying the same N sales to an empty SQLite database vs one
whose ``erp_ledger`` already holds millions of rows (5M; quick: 500k), with matching
``erp_stock``, ``erp_daily_sales`` and ``runtime_events`` history. Before each round the
bench's own (store, sku) pairs are reset on the big database to the state an empty one has
(no stock, no sales, no alerts), so both do the same work, reorder suggestions included; only
the size of the tables differs. Each round publishes the N sales with fresh event ids to a
topic of its own and runs both under fresh groups. Ratio big / empty: ~1.0 expected.

(b) One vs two ``tillstream consume`` processes (one consumer group, PostgreSQL) applying the
same N sales from a topic of ``topic_partitions`` partitions. The processes are started once
(one alone in its group, two together in another, each group on its own topic and database);
each round publishes N sales to one topic and times until the group's processes together
report N more applied. Ratio two / one. Skipped without PostgreSQL: SQLite serialises writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.env import BenchEnv
from bench.harness import Figure, paired, ratio, stage_result
from bench.stages.consumer_apply import (
    Databases,
    MeasuredService,
    apply_rate,
    create_topic,
    delete_topics,
    dlq_topic,
    erp_consumer,
    publish_sales,
    service_codec,
    unique,
)
from bench.workload import sales
from tillstream.core.kafka import make_producer
from tillstream.core.topics import store_key
from tillstream.dev.ports import free_port
from tillstream.dev.processes import Service
from tillstream.simulate.catalog import CATALOG
from tillstream_consumers.runtime.applier import Applier
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.runner import RunnerConfig

ROOT = Path(__file__).resolve().parents[2]
STORES = 200
SKUS = 2_000
HISTORY_CONSUMER = "bench-erp-history"


# -- (a) history ------------------------------------------------------------------------------


def bench_keys() -> tuple[list[str], list[str]]:
    """The stores and SKUs of the workload's sales (``bench.workload.sales``)."""
    return [f"B{n:03d}" for n in range(6)], sorted(item.sku for item in CATALOG)


def prefill(path: Path, rows: int, consumer: Any, encode: Any) -> None:
    """A ledger of ``rows`` lines (5 per event) over STORES stores x SKUS SKUs, the bench's
    own among them, with stock, a day of sales and applied event ids to match; written with
    SQL alone (a recursive CTE), the item index built after."""
    db = Database(f"sqlite:///{path}")
    try:
        Applier(consumer, db, encode).prepare()
    finally:
        db.close()
    stores, skus = bench_keys()
    stores += [f"H{n:03d}" for n in range(STORES - len(stores))]
    skus += [f"SKU-H{n:05d}" for n in range(SKUS - len(skus))]
    events = rows // 5
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-400000")
        conn.execute("BEGIN")
        conn.execute("CREATE TEMP TABLE st (i INTEGER PRIMARY KEY, id TEXT)")
        conn.execute("CREATE TEMP TABLE sk (i INTEGER PRIMARY KEY, sku TEXT)")
        conn.executemany("INSERT INTO st VALUES (?, ?)", enumerate(stores))
        conn.executemany("INSERT INTO sk VALUES (?, ?)", enumerate(skus))
        # Event ids as random as uuids, inserted in key order (a sort, not random B-tree
        # inserts); the item index is dropped meanwhile and built once at the end.
        conn.execute("DROP INDEX erp_ledger_at")
        conn.execute(
            """
            WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < ?),
            e(x, id) AS (SELECT x, lower(hex(randomblob(16))) FROM c)
            INSERT INTO erp_ledger
                (event_id, line_no, store_id, sku, qty_change, kind, reference, occurred_at,
                 at_us)
            SELECT e.id, l.n, st.id, sk.sku, -1000, 'sale', 'T01/' || e.x,
                   strftime('%Y-%m-%dT%H:%M:%S+00:00', 1700000000 + e.x * 5, 'unixepoch'),
                   (1700000000 + e.x * 5) * 1000000
            FROM e
            CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3
                        UNION ALL SELECT 4 UNION ALL SELECT 5) AS l
            JOIN st ON st.i = e.x % ?
            JOIN sk ON sk.i = (e.x * 7 + l.n * 13) % ?
            ORDER BY e.id, l.n
            """,
            (events - 1, len(stores), len(skus)),
        )
        conn.execute("CREATE INDEX erp_ledger_at ON erp_ledger (store_id, sku, at_us)")
        conn.execute(
            "INSERT INTO runtime_events (consumer, event_id) "
            "SELECT DISTINCT ?, event_id FROM erp_ledger ORDER BY 2",
            (HISTORY_CONSUMER,),
        )
        conn.execute(
            "INSERT INTO erp_stock (store_id, sku, on_hand, alerted, updated_at) "
            "SELECT st.id, sk.sku, 100000, 0, '2024-01-01T00:00:00+00:00' FROM st, sk"
        )
        conn.execute(
            "INSERT INTO erp_daily_sales (store_id, sku, sales_day, units) "
            "SELECT st.id, sk.sku, '2024-01-01', 5000 FROM st, sk"
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def reset_bench_keys(path: Path) -> None:
    """Give the bench's (store, sku) pairs the state an empty database has."""
    stores, _ = bench_keys()
    marks = ", ".join("?" * len(stores))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"DELETE FROM erp_stock WHERE store_id IN ({marks})", stores)
        conn.execute(f"DELETE FROM erp_daily_sales WHERE store_id IN ({marks})", stores)
        conn.execute("DELETE FROM runtime_outbox")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def fresh_ids(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "event_id": str(uuid.uuid4())} for r in records]


async def history(env: BenchEnv, topics: list[str]) -> tuple[Figure, Figure, int, float]:
    """Apply rates on the big database and on empty ones, round by round."""
    settings = env.settings
    codec = env.codec()
    rows = 500_000 if env.quick else 5_000_000
    count = 1_500 if env.quick else 10_000
    big = env.scratch / "growth-big.db"
    started = time.perf_counter()
    history_consumer = erp_consumer(settings, HISTORY_CONSUMER, ("unused",))
    await asyncio.to_thread(prefill, big, rows, history_consumer, service_codec(settings).encode)
    prefill_seconds = time.perf_counter() - started
    dbs = Databases(env)
    workload = sales(count)

    async def apply(topic: str, url: str) -> float:
        group = unique("bench-erp-growth")
        topics.append(dlq_topic(group))
        service = MeasuredService(
            erp_consumer(settings, group, (topic,)),
            settings,
            RunnerConfig(db_url=url, batch_size=500),
            target=count,
        )
        return await apply_rate(service)

    async def on_big(topic: str) -> float:
        await asyncio.to_thread(reset_bench_keys, big)
        return await apply(topic, f"sqlite:///{big}")

    async def on_empty(topic: str) -> float:
        url = dbs.new("sqlite", "growth")
        try:
            return await apply(topic, url)
        finally:
            dbs.drop(url)

    full, empty = Figure("events/s"), Figure("events/s")
    warmup = 1
    for n in range(warmup + env.rounds):
        topic = unique("bench.growth")
        topics.append(topic)
        await create_topic(settings, topic)
        await publish_sales(settings, codec, topic, fresh_ids(workload))
        if n % 2 == 0:
            a, b = await on_big(topic), await on_empty(topic)
        else:
            b, a = await on_empty(topic), await on_big(topic)
        if n >= warmup:
            full.rounds.append(a)
            empty.rounds.append(b)
        await delete_topics(settings, [topic])
    return full, empty, rows, prefill_seconds


# -- (b) scale-out ----------------------------------------------------------------------------


class ConsumerProcess(Service):
    """``tillstream consume`` of the bench's ERP on one topic, one member of ``group``."""

    def __init__(self, group: str, topic: str, db_url: str, bootstrap: str, workdir: Path) -> None:
        port = free_port()
        super().__init__(
            f"consumer {group}:{port}",
            ["consume", "bench.growth_consumer:TopicErpInventory",
             "--group", group, "--db", db_url],
            port,
            workdir / f"consumer-{port}.log",
            {
                "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "TILLSTREAM_CONSUMER_LISTEN": f"127.0.0.1:{port}",
                "TILLSTREAM_LOG_LEVEL": "WARNING",
                "BENCH_GROWTH_TOPIC": topic,
            },
            cwd=ROOT,
            own_session=False,
        )  # fmt: skip

    async def status(self, client: httpx.AsyncClient) -> tuple[bool, int]:
        """(ready, records applied since start)."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"consumer process exited: {self.tail()}")
        try:
            response = await client.get(f"{self.url}/readyz", timeout=2)
        except httpx.HTTPError:
            return False, 0
        body = response.json()
        return bool(body.get("ready")), int(body.get("applied", 0))

    async def assigned(self, client: httpx.AsyncClient) -> int:
        response = await client.get(f"{self.url}/metrics", timeout=2)
        for line in response.text.splitlines():
            if line.startswith("tillstream_consumer_assigned_partitions{"):
                return int(float(line.rsplit(" ", 1)[1]))
        return 0


@dataclass
class Group:
    topic: str
    members: list[ConsumerProcess]
    expected: int = 0

    async def applied(self, client: httpx.AsyncClient) -> int:
        return sum([(await m.status(client))[1] for m in self.members])


async def settled(groups: list[Group], client: httpx.AsyncClient, partitions: int) -> None:
    """Every process ready, and each group's partitions all assigned, one way or another."""
    deadline = time.monotonic() + 120
    while True:
        ready = all([(await m.status(client))[0] for g in groups for m in g.members])
        if ready:
            counts = [[await m.assigned(client) for m in g.members] for g in groups]
            if all(sum(c) == partitions and all(c) for c in counts):
                return
        if time.monotonic() > deadline:
            raise RuntimeError("consumer processes did not settle within 120s")
        await asyncio.sleep(0.2)


async def scale_out(env: BenchEnv, topics: list[str]) -> tuple[Figure, Figure, int]:
    settings = env.settings
    codec = env.codec()
    count = 2_000 if env.quick else 20_000
    dbs = Databases(env)
    workload = sales(count, stores=60)  # many stores (keys): the partitions share the load
    groups: list[Group] = []
    urls: list[str] = []
    producer = make_producer(settings)
    async with httpx.AsyncClient() as client:
        try:
            for members in (1, 2):
                topic = unique("bench.growth-scale")
                group = unique(f"bench-erp-scale{members}")
                topics += [topic, dlq_topic(group)]
                await create_topic(settings, topic)
                urls.append(dbs.new("postgresql", f"scale{members}"))
                groups.append(Group(topic, [
                    ConsumerProcess(group, topic, urls[-1], settings.kafka_bootstrap_servers,
                                    env.scratch / "growth-consumers")
                    for _ in range(members)
                ]))  # fmt: skip
            for g in groups:
                for m in g.members:
                    m.start()
            await settled(groups, client, settings.topic_partitions)
            await producer.start()

            async def measure(g: Group) -> float:
                values = [
                    (store_key(r["store_id"]), codec.encode("sale", r)) for r in fresh_ids(workload)
                ]
                g.expected += len(values)
                started = time.perf_counter()
                futures = [await producer.send(g.topic, v, key=k) for k, v in values]
                await asyncio.gather(*futures)
                deadline = time.monotonic() + 300
                while await g.applied(client) < g.expected:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{g.topic}: not all applied within 300s")
                    await asyncio.sleep(0.02)
                return len(values) / (time.perf_counter() - started)

            one, two = groups

            async def ours() -> float:
                return await measure(two)

            async def reference() -> float:
                return await measure(one)

            rounds = 1 if env.quick else env.rounds
            mine, theirs = await paired(ours, reference, rounds=rounds, unit="events/s")
        finally:
            with contextlib.suppress(Exception):
                await producer.stop()
            await asyncio.gather(*(asyncio.to_thread(m.stop) for g in groups for m in g.members))
            for url in urls:
                dbs.drop(url)
    return mine, theirs, count


# -- the stage --------------------------------------------------------------------------------


async def run(env: BenchEnv) -> dict[str, Any]:
    topics: list[str] = []
    figures: dict[str, Figure] = {}
    reference: dict[str, Figure] = {}
    ratios: dict[str, dict[str, Any]] = {}
    notes = []
    try:
        full, empty, rows, prefill_seconds = await history(env, topics)
        figures["apply, big ledger"] = full
        reference["apply, big ledger"] = empty
        ratios["apply, big ledger"] = ratio(full, empty)
        notes.append(
            f"(a) SQLite; ledger of {rows:,} rows ({STORES} stores x {SKUS} SKUs, "
            f"prefilled in {prefill_seconds:.0f} s), reference: an empty database; "
            f"ratio big/empty, ~1.0 expected"
        )
        if env.postgres_url:
            two, one, count = await scale_out(env, topics)
            figures["two processes"] = two
            reference["two processes"] = one
            ratios["two processes"] = ratio(two, one)
            notes.append(
                f"(b) PostgreSQL, {count:,} sales per round over "
                f"{env.settings.topic_partitions} partitions, timed from the first send "
                f"to the last commit; ratio two/one processes on {os.cpu_count()} cores"
            )
        else:
            notes.append("(b) skipped: no PostgreSQL (SQLite serialises writers)")
    finally:
        await delete_topics(env.settings, topics)
    history_ratio = ratios["apply, big ledger"]["median"]
    met = history_ratio is not None and history_ratio >= 0.8
    return stage_result(
        figures=figures,
        reference_name="(a) the same service on an empty database; (b) one process",
        reference=reference,
        ratios=ratios,
        target="(a) big/empty at least 0.8 (cost does not grow with history); (b) reported",
        met=met,
        notes="; ".join(notes),
    )
