"""How large a record Kafka will take, per topic: the edge refuses at the door what it could
never publish, instead of accepting it and blocking the store's queue behind it.

A record must fit both the producer's ``max_request_size`` and the topic's
``max.message.bytes`` (read from the broker; Kafka's default until it answers). The size
compared is the record batch aiokafka would build for the event alone, header included, so
the door and the producer measure the same thing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from tillstream.core.kafka import make_admin
from tillstream.core.settings import Settings
from tillstream.core.tasks import pause

log = logging.getLogger(__name__)

BROKER_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""Kafka's ``message.max.bytes`` default: a topic's limit until the broker tells us its own."""
REFRESH_INTERVAL = 600.0
RETRY_INTERVAL = 30.0
ASK_TIMEOUT = 10.0


def record_size(key: bytes, value: bytes) -> int:
    """Bytes of the record batch holding this one record (what Kafka's limits count)."""
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
    return size


class RecordLimits:
    """The largest record each topic takes from this producer."""

    def __init__(self, max_request_bytes: int, topic_bytes: dict[str, int] | None = None) -> None:
        self.max_request_bytes = max_request_bytes
        self.topic_bytes = dict(topic_bytes or {})

    def limit(self, topic: str) -> int:
        return min(
            self.max_request_bytes, self.topic_bytes.get(topic, BROKER_DEFAULT_MAX_MESSAGE_BYTES)
        )

    def problem(self, topic: str, key: bytes, value: bytes) -> str | None:
        """Why Kafka would refuse this record, or None if it fits. Names sizes, never content."""
        size, limit = record_size(key, value), self.limit(topic)
        if size <= limit:
            return None
        return (
            f"the encoded event is {size} bytes; Kafka takes at most {limit} bytes per record "
            f"on {topic} (split it into smaller events)"
        )


async def read_topic_limits(settings: Settings, topics: Iterable[str]) -> dict[str, int]:
    """Each topic's ``max.message.bytes`` as the broker reports it (missing topics left out)."""
    admin = make_admin(settings)
    try:  # a failed start is stopped too, not left unclosed
        await admin.start()
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, t, {"max.message.bytes": None}) for t in topics
        ]
        responses = await admin.describe_configs(resources)
    finally:
        await admin.close()
    found: dict[str, int] = {}
    for response in responses:
        for error_code, _message, _type, name, entries in response.resources:
            if error_code != 0:
                continue
            for entry in entries:
                if entry[0] == "max.message.bytes" and entry[1] is not None:
                    found[name] = int(entry[1])
    return found


async def keep_limits_current(
    limits: RecordLimits, settings: Settings, topics: Iterable[str]
) -> None:
    """Refresh ``limits`` from the broker now and every few minutes; never raises (the edge
    must start and sell with Kafka away: until then Kafka's default applies)."""
    names = list(topics)
    while True:
        try:
            limits.topic_bytes.update(
                await asyncio.wait_for(read_topic_limits(settings, names), ASK_TIMEOUT)
            )
            log.info("record limits: %s", {t: limits.limit(t) for t in names})
            delay = REFRESH_INTERVAL
        except (KafkaError, OSError, TimeoutError) as exc:
            log.debug("topic limits not read (%s); retrying", exc)
            delay = RETRY_INTERVAL
        await pause(delay)
