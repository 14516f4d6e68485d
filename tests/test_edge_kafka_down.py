"""``tillstream_edge_kafka_up`` and ``/readyz`` tell the truth when the only broker stops:
down within the delivery timeout, one warning per outage, nothing lost after the restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.edge_support import EdgeProcess
from tests.test_edge_faults import arrived, post_stream
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import create_topics
from tillstream.core.settings import Settings
from tillstream.dev.broker import LocalKafka
from tillstream.dev.ports import free_port

DELIVERY_TIMEOUT = 5.0


async def within(seconds: float, check: Callable[[], bool], what: str) -> float:
    """Seconds until ``check()`` holds (fails after ``seconds``)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds}s: {what}")
        await asyncio.sleep(0.2)
    return time.monotonic() - start


def ready(edge: EdgeProcess) -> int:
    return httpx.get(f"{edge.url}/readyz", timeout=5).status_code


async def test_a_stopped_broker_is_reported_down_within_the_delivery_timeout(
    kafka_libs: Path, tmp_path: Path, codec: AvroCodec
) -> None:
    broker = LocalKafka(data_dir=tmp_path / "kafka", libs=kafka_libs, port=free_port())
    broker.start()
    work = tmp_path / "edge"
    work.mkdir()
    store = "S-DOWN"
    edge = EdgeProcess(
        store,
        broker.bootstrap,
        work,
        env={"TILLSTREAM_EDGE_DELIVERY_TIMEOUT_S": str(DELIVERY_TIMEOUT)},
    )
    try:
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap, topic_partitions=3)
        await create_topics(settings)
        edge.start()
        # Idle and connected: up and ready before any event (the forwarder probes).
        await within(20, lambda: edge.metric("tillstream_edge_kafka_up") == 1, "kafka_up 1")
        assert ready(edge) == 200
        accepted: list[str] = []
        await post_stream(edge.url, store, 20, accepted)

        broker.stop()  # the only broker: every publish stalls from now on
        stopped = time.monotonic()
        await post_stream(edge.url, store, 20, accepted)  # tills keep selling meanwhile
        await within(
            DELIVERY_TIMEOUT + 10 - (time.monotonic() - stopped),
            lambda: edge.metric("tillstream_edge_kafka_up") == 0 and ready(edge) == 503,
            "kafka_up 0 and /readyz 503",
        )
        down_after = time.monotonic() - stopped
        state: dict[str, Any] = httpx.get(f"{edge.url}/readyz", timeout=5).json()
        assert state["kafka_up"] is False and state["outbox"]["depth"] > 0
        for _ in range(3):  # minutes in production; several retry rounds here
            await post_stream(edge.url, store, 10, accepted)
            await asyncio.sleep(DELIVERY_TIMEOUT)
        assert edge.metric("tillstream_edge_kafka_up") == 0

        broker.start()
        await within(60, lambda: ready(edge) == 200, "/readyz 200 after the restart")
        counts = await arrived(settings, codec, store, set(accepted))
        assert len(accepted) == 70 and set(counts) == set(accepted)
        assert max(counts.values()) == 1, "the stalled producer was kept: no duplicates"
        log = edge.log()
        assert log.count("Kafka unreachable") == 1, "one warning per outage"
        assert log.count("Kafka reachable again") == 1
        print(f"kafka_up 0 and /readyz 503 {down_after:.1f}s after the broker stopped")
    finally:
        edge.kill()
        broker.stop()
