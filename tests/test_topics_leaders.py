"""Topics are usable when ``create_topics`` returns: every new partition has its leader, so
the demo's first producer (head office's master data) does not meet NotLeaderForPartition
while the controller elects them (aiokafka logs each retry on the demo's first screen)."""

from __future__ import annotations

import logging
import uuid

import pytest

from tillstream.core.kafka import create_topics, make_admin, make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import TopicSpec


async def test_new_topics_have_their_leaders_when_created(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = settings.model_copy(update={"topic_partitions": 6})
    specs = tuple(TopicSpec(f"leaders-{uuid.uuid4().hex[:8]}-{n}", None) for n in range(4))
    outcome = await create_topics(cfg, specs)
    assert set(outcome.values()) == {"created"}
    admin = make_admin(cfg)
    await admin.start()
    try:  # one look, right away: no waiting here
        described = await admin.describe_topics([s.name for s in specs])
    finally:
        await admin.close()
    leaders = {
        (t["topic"], p["partition"]): p["leader"] for t in described for p in t["partitions"]
    }
    assert len(leaders) == 4 * 6 and min(leaders.values()) >= 0, leaders
    producer = make_producer(cfg)
    await producer.start()
    try:
        with caplog.at_level(logging.WARNING, logger="aiokafka"):
            for spec in specs:
                for partition in range(6):
                    await producer.send_and_wait(spec.name, b"x", partition=partition)
    finally:
        await producer.stop()
    assert "NotLeaderForPartition" not in caplog.text
