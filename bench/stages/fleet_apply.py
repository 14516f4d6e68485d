"""Stage: the fleet service (``tillstream consume fleet``) applying the heartbeats of 5,000
stores against a bare ``aiokafka`` consumer decoding the same records, on SQLite and
PostgreSQL; and the size of one heartbeat.

Each heartbeat is a representative ``estate_report``: 20 tills (each with two conditions)
and 6 serial devices, nothing waiting in the outbox. The service stores each report in its
history and as its store's state (the edge, its tills, devices and what it applied), and
evaluates the store's flags, as it does live; the quick run sends one heartbeat per store,
the full run two (the second replaces the state the first made). As in ``consumer_apply``
(whose ERP figure sets the target), each round runs under a fresh consumer group on a fresh
database; the clock starts at the first batch and stops when the last record's batch has
committed (ours) or the last record is decoded (reference).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from bench.env import BenchEnv
from bench.harness import Figure, paired, ratio, stage_result
from bench.stages.consumer_apply import (
    TARGET,
    Databases,
    MeasuredService,
    apply_rate,
    bare_decode_rate,
    create_topic,
    delete_topics,
    dlq_topic,
    service_codec,
    unique,
)
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import store_key
from tillstream.dev.samples import sample_estate_report
from tillstream_consumers.fleet import FleetService
from tillstream_consumers.runtime.runner import RunnerConfig

STORES = 5_000
TILLS = 20
DEVICES = 6


def heartbeats(rounds: int) -> list[dict[str, Any]]:
    """``rounds`` heartbeats of each of :data:`STORES` stores, 30 s apart, in order."""
    start = datetime.now(UTC) - timedelta(minutes=5)
    return [
        sample_estate_report(
            f"H{n:05d}",
            at=start + timedelta(seconds=30 * r),
            tills=TILLS,
            devices=DEVICES,
            edge_id=f"edge-{n:05d}",
        )
        for r in range(rounds)
        for n in range(STORES)
    ]


def fleet_consumer(settings: Settings, name: str, topic: str) -> FleetService:
    """The fleet service under consumer group ``name``, reading ``topic``."""
    grouped = FleetService.in_group(name)  # its migrations stay the fleet's own
    cls = type("BenchFleetService", (grouped,), {"topics": (topic,), "publishes": ()})
    return cast(FleetService, cls(settings))


async def publish(
    settings: Settings, codec: AvroCodec, topic: str, reports: list[dict[str, Any]]
) -> None:
    """The reports, keyed by store, as the edges publish them."""
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic, codec.encode("estate_report", r), key=store_key(r["store_id"])
            )
            for r in reports
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def run(env: BenchEnv) -> dict[str, Any]:
    settings = env.settings
    codec = env.codec()
    reports = heartbeats(1 if env.quick else 2)
    count = len(reports)
    size = len(codec.encode("estate_report", reports[0]))
    topic = unique("bench.fleet-apply")
    created = [topic]
    dbs = Databases(env)
    await create_topic(settings, topic)
    try:
        await publish(settings, codec, topic, reports)
        figures: dict[str, Figure] = {"heartbeat size": Figure("bytes", [float(size)])}
        reference: dict[str, Figure] = {}
        ratios: dict[str, dict[str, Any]] = {}
        for kind in dbs.kinds():

            async def ours(kind: str = kind) -> float:
                group = unique(f"bench-fleet-apply-{kind}")
                created.append(dlq_topic(group))
                url = dbs.new(kind, "fleet")
                try:
                    service = MeasuredService(
                        fleet_consumer(settings, group, topic),
                        settings,
                        RunnerConfig(db_url=url, batch_size=500),
                        target=count,
                    )
                    return await apply_rate(service)
                finally:
                    dbs.drop(url)

            async def bare() -> float:
                return await bare_decode_rate(settings, service_codec(settings), topic, count)

            mine, theirs = await paired(ours, bare, rounds=env.rounds, unit="reports/s")
            figures[kind] = mine
            reference[kind] = theirs
            ratios[kind] = ratio(mine, theirs)
    finally:
        await delete_topics(settings, created)
    met = all(r["median"] is not None and r["median"] >= TARGET for r in ratios.values())
    notes = (
        f"{count} heartbeats of {STORES} stores ({count // STORES} each), {TILLS} tills and "
        f"{DEVICES} devices per report ({size} bytes encoded), on a topic of the bench's own "
        f"({settings.topic_partitions} partitions), batch_size 500; fresh group and database "
        "per round; timed from the first batch to the last commit, flags evaluated (ours), or "
        "the last decode (reference). The target is the ERP's (consumer_apply)."
    )
    if not env.postgres_url:
        notes += " PostgreSQL not available: its figure is skipped."
    return stage_result(
        figures=figures,
        reference_name="bare AIOKafkaConsumer (same settings, fresh group) + codec.decode",
        reference=reference,
        ratios=ratios,
        target=f"at least {TARGET} of the bare consumer's rate (the ERP's target)",
        met=met,
        notes=notes,
    )
