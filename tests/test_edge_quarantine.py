"""Nothing Kafka refuses for good may block a store's stream: the real broker refuses, the
forwarder quarantines, later events flow, and ``tillstream edge quarantine`` re-sends."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import REGISTRY

from tests.security_support import ADMIN, SecureKafka, secure_kafka
from tillstream.core.kafka import make_admin, make_consumer, make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import REORDER_SUGGESTIONS, SALES
from tillstream_edge.forwarder import Forwarder
from tillstream_edge.limits import BROKER_DEFAULT_MAX_MESSAGE_BYTES, read_topic_limits, record_size
from tillstream_edge.outbox import Outbox, OutboxEvent

CLI = [sys.executable, "-m", "tillstream"]
TOPIC_LIMIT = 40_000


async def small_limit_topic(settings: Settings) -> str:
    """A fresh one-partition topic that takes records of at most TOPIC_LIMIT bytes."""
    name = f"test.limit-{uuid.uuid4().hex[:8]}"
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, 1, 1, topic_configs={"max.message.bytes": str(TOPIC_LIMIT)})]
        )
    finally:
        await admin.close()
    return name


async def set_topic_limit(settings: Settings, topic: str, limit: int) -> None:
    admin = make_admin(settings)
    await admin.start()
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(limit)}
        )
        await admin.alter_configs([resource])
    finally:
        await admin.close()


def event(topic: str, name: str, size: int) -> OutboxEvent:
    event_id = f"{name}-{uuid.uuid4().hex[:6]}"
    value = event_id.encode() + os.urandom(size)  # random: lz4 cannot shrink it under a limit
    return OutboxEvent(event_id, "sale", topic, b"S-Q", value, "http")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def quarantined_total(topic: str) -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "tillstream_edge_events_quarantined"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("topic") == topic
    )


async def test_the_door_reads_each_topics_limit_from_the_broker(
    settings: Settings, kafka_topics: Settings
) -> None:
    topic = await small_limit_topic(settings)
    async with asyncio.timeout(20):  # a topic just created reaches every broker's cache soon
        while topic not in (limits := await read_topic_limits(settings, [topic, SALES.name])):
            await asyncio.sleep(0.5)
    assert "test.no-such-topic" not in await read_topic_limits(settings, ["test.no-such-topic"])
    assert limits == {topic: TOPIC_LIMIT, SALES.name: BROKER_DEFAULT_MAX_MESSAGE_BYTES}


async def test_refused_records_are_quarantined_later_events_flow_and_retry_resends(
    settings: Settings, tmp_path: Path, consumer_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    topic = await small_limit_topic(settings)
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    before = quarantined_total(topic)
    first = event(topic, "first", 1_000)
    too_big_for_topic = event(topic, "topic-refuses", 100_000)  # the broker refuses it
    too_big_to_send = event(topic, "producer-refuses", 2_000_000)  # over max_request_size
    later = [event(topic, f"later{n}", 1_000) for n in range(3)]
    await outbox.append([first, too_big_for_topic, too_big_to_send, *later])
    forwarder = Forwarder(outbox, lambda: make_producer(settings), delivery_timeout=15)
    runner = asyncio.create_task(forwarder.run())
    consumer = await consumer_factory(topic)
    try:
        seen = await read_values(consumer, {first.value, *(e.value for e in later)})
        assert seen == [first.value, *(e.value for e in later)], "order, and no refused record"
        async with asyncio.timeout(30):
            while len(held := {q.event_id: q.reason for q in await outbox.quarantined()}) < 2:
                await asyncio.sleep(0.2)
        assert set(held) == {too_big_for_topic.event_id, too_big_to_send.event_id}
        assert all(reason.startswith("MessageSizeTooLargeError") for reason in held.values())
        assert forwarder.kafka_up, "a refused record is not an outage"
        assert "unreachable" not in caplog.text
        assert quarantined_total(topic) - before == 2
        assert (await outbox.backlog()).depth == 0

        shown = cli("edge", "quarantine", "show", "--json", "--outbox", str(outbox.path))
        assert shown.returncode == 0, shown.stderr
        rows = [json.loads(line) for line in shown.stdout.splitlines()]
        assert [r["event_id"] for r in rows] == [
            too_big_for_topic.event_id,
            too_big_to_send.event_id,
        ]
        assert rows[0]["bytes"] == record_size(b"S-Q", too_big_for_topic.value)
        assert rows[0]["topic"] == topic and rows[0]["type"] == "sale"
        assert rows[0]["quarantined_at"].endswith("+00:00")
        listed = cli("edge", "quarantine", "show", "--outbox", str(outbox.path))
        assert too_big_to_send.event_id in listed.stdout and "2 quarantined" in listed.stderr

        # The operator raises the topic's limit and re-sends what it refused.
        await set_topic_limit(settings, topic, 200_000)
        retried = cli(
            "edge", "quarantine", "retry", too_big_for_topic.event_id, "--outbox", str(outbox.path)
        )
        assert retried.returncode == 0, retried.stderr
        assert "1 event(s) back in the queue" in retried.stdout
        assert await read_values(consumer, {too_big_for_topic.value}) == [too_big_for_topic.value]
        assert [q.event_id for q in await outbox.quarantined()] == [too_big_to_send.event_id]
        nothing = cli("edge", "quarantine", "retry", "--outbox", str(outbox.path))
        assert nothing.returncode != 0 and "--all" in nothing.stderr
    finally:
        forwarder.stop()
        await asyncio.wait_for(runner, 30)
        await forwarder.close()
        await outbox.close()


async def read_values(consumer: Any, want: set[bytes], timeout: float = 60) -> list[bytes]:
    """Record values in partition order, until every one of ``want`` has arrived."""
    seen: list[bytes] = []
    async with asyncio.timeout(timeout):
        while not want <= set(seen):
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                seen += [m.value for m in batch]
    return seen


@pytest.fixture(scope="module")
def secure(request: pytest.FixtureRequest) -> SecureKafka:
    """A broker enforcing the ACL model: store-S1 may write the store topics, nothing else."""
    return secure_kafka(request)


async def test_an_event_for_a_topic_the_store_may_not_write_is_quarantined(
    secure: SecureKafka, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    allowed = [event(SALES.name, f"sale{n}", 100) for n in range(2)]
    forbidden = event(REORDER_SUGGESTIONS.name, "forged", 100)
    await outbox.append([allowed[0], forbidden, allowed[1]])
    store = secure.sasl_settings("store-S1")
    forwarder = Forwarder(outbox, lambda: make_producer(store), delivery_timeout=15)
    runner = asyncio.create_task(forwarder.run())
    reader = make_consumer(secure.sasl_settings(ADMIN), SALES.name, group_id=None)
    await reader.start()
    try:
        seen = await read_values(reader, {e.value for e in allowed})
        assert [v for v in seen if v in {e.value for e in allowed}] == [e.value for e in allowed]
        async with asyncio.timeout(30):
            while not (held := await outbox.quarantined()):
                await asyncio.sleep(0.2)
        (only,) = held
        assert only.event_id == forbidden.event_id
        assert only.reason.startswith("TopicAuthorizationFailedError")
        assert (await outbox.backlog()).depth == 0
        assert forwarder.kafka_up, "a refusal is an answer, not an outage"
    finally:
        await reader.stop()
        forwarder.stop()
        await asyncio.wait_for(runner, 30)
        await forwarder.close()
        await outbox.close()
