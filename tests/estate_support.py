"""The store estate's tests' helpers: an edge's reports as they arrive on
``tillstream.estate-reports``, and head office's desired state published straight to
``tillstream.estate-desired`` (as ``tillstream fleet`` will)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_consumer, make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import ESTATE_DESIRED, ESTATE_REPORTS, estate_key, store_key

HEARTBEAT = "2"
"""The edges' heartbeat in these tests (seconds), TILLSTREAM_EDGE_HEARTBEAT_S."""


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Arrived:
    """A report as it arrived: decoded, its bytes, the broker's append time (ms)."""

    record: dict[str, Any]
    value: bytes
    appended_ms: int
    seen_at: float = field(default_factory=time.monotonic)
    """When the test read it (monotonic)."""


class Reports:
    """The estate reports of one store, from the topic's end when entered."""

    def __init__(self, settings: Settings, codec: AvroCodec, store: str) -> None:
        self.settings, self.codec, self.store = settings, codec, store
        self.arrived: list[Arrived] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._read = 0

    async def __aenter__(self) -> Reports:
        consumer = self._consumer = make_consumer(self.settings, group_id=None)
        await consumer.start()
        cluster = await consumer._client.fetch_all_metadata()
        parts = cluster.partitions_for_topic(ESTATE_REPORTS.name) or set()
        partitions = [TopicPartition(ESTATE_REPORTS.name, p) for p in sorted(parts)]
        assert partitions, "the estate reports' topic exists (kafka_topics)"
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end now: reports sent from here on are read
            await consumer.position(tp)
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def next(
        self, where: Callable[[dict[str, Any]], bool] = lambda _r: True, timeout: float = 30
    ) -> dict[str, Any]:
        """The next report not returned yet that ``where`` accepts (the others are passed)."""
        return (await self.next_arrived(where, timeout)).record

    async def next_arrived(
        self, where: Callable[[dict[str, Any]], bool] = lambda _r: True, timeout: float = 30
    ) -> Arrived:
        assert self._consumer is not None
        async with asyncio.timeout(timeout):
            while True:
                while self._read < len(self.arrived):
                    arrived = self.arrived[self._read]
                    self._read += 1
                    if where(arrived.record):
                        return arrived
                batches = await self._consumer.getmany(timeout_ms=200)
                for messages in batches.values():
                    for m in messages:
                        if m.key == store_key(self.store):
                            decoded = self.codec.decode(m.value)
                            assert decoded.event == "estate_report"
                            self.arrived.append(Arrived(decoded.record, m.value, m.timestamp))


def device_of(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in report["devices"] if d["device_id"] == name)
    return found


def till_of(report: dict[str, Any], till: str) -> dict[str, Any] | None:
    return next((t for t in report["tills"] if t["till_id"] == till), None)


def applied_of(report: dict[str, Any], target: str) -> dict[str, Any] | None:
    return next((a for a in report["applied"] if a["target"] == target), None)


def desired(
    store: str,
    target: str,
    version: int,
    *,
    till: dict[str, Any] | None = None,
    device: dict[str, Any] | None = None,
    edge: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``estate_desired`` record, as head office publishes one."""
    return {
        "change_id": str(uuid.uuid4()),
        "store_id": store,
        "target": target,
        "version": version,
        "published_at": datetime.now(UTC),
        "published_by": "test",
        "till": None if till is None else {
            "lifecycle": "ACTIVE",
            "token_sha256": None,
            "previous_token_until": None,
            "previous_token_sha256": None,
            **till,
        },
        "device": device,
        "edge": None if edge is None else {
            "log_level": None,
            "max_event_age_seconds": None,
            "max_future_seconds": None,
            **edge,
        },
    }  # fmt: skip


async def publish(
    settings: Settings, codec: AvroCodec, record: dict[str, Any] | None, store: str, target: str
) -> None:
    """Head office's desired state of ``target`` (None: a tombstone, the store's own again)."""
    value = None if record is None else codec.encode("estate_desired", record)
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(ESTATE_DESIRED.name, value, key=estate_key(store, target))
    finally:
        await producer.stop()
