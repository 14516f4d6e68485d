"""Stage 2: the edge's outbox to Kafka. tillstream's :class:`tillstream_edge.forwarder.Forwarder`
draining a filled :class:`tillstream_edge.outbox.Outbox` (read a batch, send, await every ack, mark
sent, repeat) vs a bare ``AIOKafkaProducer`` sending the same encoded sales with the same keys
and awaiting all acks.

Both sides use a producer from ``tillstream.core.kafka.make_producer``, which returns a plain
``AIOKafkaProducer`` (idempotent, ``acks=all``, ``linger_ms=5``, lz4): the options are the
same by construction. Producer start-up (metadata, InitProducerId) is outside the timing on
both sides; filling the outbox is too. Each round of ours gets a fresh outbox.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from typing import Any

from bench.env import BenchEnv
from bench.harness import paired, rate, ratio, stage_result
from tillstream.core.kafka import create_topics, make_producer
from tillstream.core.topics import SALES, store_key
from tillstream_edge.forwarder import Forwarder
from tillstream_edge.outbox import Outbox, OutboxEvent

LAST: dict[str, Any] = {}
"""Set by :func:`run`: ``rate`` (events/s figure as JSON) and ``reference_rate``, so the
ceiling stage can relate this stage to the broker's limit."""

FILL_CHUNK = 1_000


def encoded_sales(env: BenchEnv, count: int) -> list[OutboxEvent]:
    """``count`` workload sales encoded as the edge would store them (topic, key, value)."""
    from bench.workload import sales

    codec = env.codec()
    return [
        OutboxEvent(
            event_id=str(record["event_id"]),
            event_type="sale",
            topic=SALES.name,
            key=store_key(record["store_id"]),
            value=codec.encode("sale", record),
            channel="bench",
        )
        for record in sales(count)
    ]


async def run(env: BenchEnv) -> dict[str, Any]:
    await create_topics(env.settings)
    count = 10_000 if env.quick else 50_000
    events = encoded_sales(env, count)
    workdir = env.scratch / "edge_publish"
    rounds = 0

    async def ours() -> float:
        nonlocal rounds
        rounds += 1
        path = workdir / f"round-{rounds}" / "outbox.db"
        outbox = Outbox(path)
        await outbox.open()
        forwarder = Forwarder(outbox, lambda: make_producer(env.settings))
        try:
            for i in range(0, len(events), FILL_CHUNK):
                await outbox.append(events[i : i + FILL_CHUNK])
            await forwarder._ensure_producer()
            started = time.perf_counter()
            sent = 0
            while batch := await forwarder._forward_once():
                sent += batch
            result = rate(sent, started)
            left = (await outbox.backlog()).depth
            if sent != len(events) or left:
                raise RuntimeError(f"forwarder sent {sent} of {len(events)}; {left} left")
            return result
        finally:
            await forwarder.close()
            await outbox.close()
            shutil.rmtree(path.parent, ignore_errors=True)

    async def bare() -> float:
        producer = make_producer(env.settings)
        await producer.start()
        try:
            started = time.perf_counter()
            futures = [await producer.send(e.topic, e.value, key=e.key) for e in events]
            await asyncio.gather(*futures)
            return rate(len(futures), started)
        finally:
            await producer.stop()

    mine, theirs = await paired(ours, bare, rounds=env.rounds, unit="events/s")
    r = ratio(mine, theirs)
    LAST.update(rate=mine.as_json(), reference_rate=theirs.as_json())
    ratios: dict[str, dict[str, Any]] = {"publish": r}
    notes = f"{count} sales of 5 lines ({_median_size(events)} bytes encoded), 6 store keys"
    ceiling = _ceiling_rate()
    if ceiling:
        share = mine.median / ceiling
        ratios["of_ceiling"] = {"median": round(share, 3), "min": None, "max": None, "rounds": []}
        notes += f"; {share:.2f} of Kafka's ProducerPerformance ({ceiling:,.0f} records/s)"
    return stage_result(
        figures={"publish": mine},
        reference_name="bare AIOKafkaProducer (same options, values and keys), all acks awaited",
        reference={"publish": theirs},
        ratios=ratios,
        target="at least 0.5 of bare aiokafka's rate",
        met=r["median"] is not None and r["median"] >= 0.5,
        notes=notes,
    )


def _median_size(events: list[OutboxEvent]) -> int:
    sizes = sorted(len(e.value) for e in events)
    return sizes[len(sizes) // 2]


def _ceiling_rate() -> float | None:
    """The ceiling stage's median records/s, if it already ran in this process."""
    module = sys.modules.get("bench.stages.ceiling")
    last: dict[str, Any] = getattr(module, "LAST", {}) if module else {}
    figure = last.get("producer_perf")
    return float(figure["median"]) if figure else None
