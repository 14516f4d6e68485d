"""Faults at the edge: Kafka stopped mid-stream, the edge killed with SIGKILL under load."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.edge_support import dumps, stock_json
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import create_topics, make_consumer
from tillstream.core.settings import Settings
from tillstream.core.topics import STOCK_MOVEMENTS
from tillstream.dev.broker import LocalKafka
from tillstream.dev.ports import free_port


async def arrived(
    settings: Settings, codec: AvroCodec, store: str, want: set[str], timeout: float = 90
) -> Counter[str]:
    """Event ids of ``store`` on the stock topic, once ``want`` have all arrived."""
    consumer = make_consumer(
        settings, STOCK_MOVEMENTS.name, group_id=f"check-{uuid.uuid4().hex[:6]}"
    )
    await consumer.start()
    counts: Counter[str] = Counter()
    try:
        async with asyncio.timeout(timeout):
            while not want <= set(counts):
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    counts.update(
                        str(codec.decode(m.value).record["event_id"])
                        for m in batch
                        if m.key == store.encode()
                    )
        for batch in (await consumer.getmany(timeout_ms=2000)).values():
            counts.update(
                str(codec.decode(m.value).record["event_id"])
                for m in batch
                if m.key == store.encode()
            )
    finally:
        await consumer.stop()
    return counts


async def post_stream(
    url: str, store: str, n: int, accepted: list[str], delay: float = 0.01
) -> None:
    """Post n single events one after another, recording each one acknowledged."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for _ in range(n):
            event = stock_json(store)
            try:
                answer = await http.post("/v1/events", content=dumps(event))
            except httpx.HTTPError:
                return  # the edge died: what was acknowledged is what counts
            if answer.status_code == 202:
                accepted.append(event["event_id"])
            await asyncio.sleep(delay)


async def test_kafka_stopped_mid_stream_loses_nothing(
    kafka_libs: Path, tmp_path: Path, edge_factory: Any, codec: AvroCodec
) -> None:
    broker = LocalKafka(data_dir=tmp_path / "kafka", libs=kafka_libs, port=free_port())
    broker.start()
    try:
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap, topic_partitions=3)
        await create_topics(settings)
        store = "S-OUTAGE"
        edge = edge_factory(store, bootstrap=broker.bootstrap)
        accepted: list[str] = []
        await post_stream(edge.url, store, 60, accepted)
        broker.stop()  # the store's uplink goes down; tills keep selling
        await post_stream(edge.url, store, 60, accepted)
        await asyncio.sleep(2)
        assert edge.metric("tillstream_edge_outbox_depth") > 0
        broker.start()  # back: the backlog drains
        counts = await arrived(settings, codec, store, set(accepted))
        assert len(accepted) == 120
        assert set(counts) == set(accepted)
        assert max(counts.values()) == 1, f"duplicates: {[i for i, c in counts.items() if c > 1]}"
    finally:
        broker.stop()


async def test_edge_killed_under_load_loses_no_acknowledged_event(
    settings: Settings, kafka_topics: Settings, tmp_path: Path, edge_factory: Any, codec: AvroCodec
) -> None:
    store = "S-KILL9"
    workdir = tmp_path / "edge"
    edge = edge_factory(store, workdir=workdir)
    accepted: list[str] = []
    tills = [
        asyncio.create_task(post_stream(edge.url, store, 400, accepted, delay=0.002))
        for _ in range(4)
    ]
    # Mid-stream, however slow the machine: after the tills' first 60 events (or 30 s).
    deadline = asyncio.get_running_loop().time() + 30
    while len(accepted) < 60 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    edge.kill()  # SIGKILL mid-stream: no chance to flush anything
    await asyncio.gather(*tills)
    assert len(accepted) > 50
    edge_factory(store, workdir=workdir)  # restarted on the same outbox
    counts = await arrived(settings, codec, store, set(accepted))
    assert set(accepted) <= set(counts)
