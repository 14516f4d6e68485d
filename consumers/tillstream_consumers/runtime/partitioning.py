"""Whether a record sits on the partition its key belongs to.

tillstream's edge (aiokafka) and the Java client put a key on ``murmur2(key) % partitions``.
librdkafka (confluent-kafka, kcat) defaults to CRC32 (``partitioner=consistent_random``): a
third-party producer left at its default spreads one store's events over two partitions,
so their order is lost and co-partitioned topics no longer meet. Consumers count such
records and log them, without the key (it may be a customer id); see docs/topics.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from tillstream.core.topics import partition_of
from tillstream_consumers.runtime import metrics

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 60.0

if TYPE_CHECKING:

    class TopicPartition(NamedTuple):
        """One partition of one topic: aiokafka's own ``TopicPartition`` (a named tuple), as
        the type checker sees it (aiokafka ships no type hints). The runtime uses this one type
        for every partition, from ``getmany`` to the stored offsets."""

        topic: str
        partition: int

else:
    from aiokafka import TopicPartition as TopicPartition


def expected_partition(key: bytes, partitions: int) -> int:
    """The partition tillstream's producers (murmur2, as Kafka's Java client) give ``key``."""
    return partition_of(key, partitions)


class RoutingCheck:
    """Counts records found on another partition than their key's, and logs them, at most
    once a minute per topic (a misconfigured producer would otherwise flood the log)."""

    def __init__(self, consumer: str, topics: Sequence[str] = ()) -> None:
        self.consumer = consumer
        for topic in topics:  # a series at 0 from the start: alerts and panels see "none yet"
            metrics.MISROUTED.labels(consumer, topic)
        self._unlogged: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}

    def check(self, topic: str, partition: int, records: Sequence[Any], partitions: int) -> int:
        """Count and log the ``records`` (with ``key`` and ``offset``) read from ``partition``
        whose key belongs to another of the topic's ``partitions``; returns how many. Keyless
        records pass, and so does everything while the partition count is unknown (0)."""
        if partitions <= 0:
            return 0
        expected_of: dict[bytes, int] = {}  # a batch holds few distinct keys: hash each once
        wrong = 0
        first: tuple[int, int] | None = None
        for record in records:
            key = record.key
            if key is None:
                continue
            expected = expected_of.get(key)
            if expected is None:
                expected = expected_of[key] = expected_partition(key, partitions)
            if expected != partition:
                wrong += 1
                if first is None:
                    first = (record.offset, expected)
        if first is not None:
            self._report(topic, partition, partitions, wrong, *first)
        return wrong

    def _report(
        self, topic: str, partition: int, partitions: int, wrong: int, offset: int, expected: int
    ) -> None:
        metrics.MISROUTED.labels(self.consumer, topic).inc(wrong)
        self._unlogged[topic] = self._unlogged.get(topic, 0) + wrong
        now = time.monotonic()
        if now - self._logged_at.get(topic, -LOG_EVERY_SECONDS) < LOG_EVERY_SECONDS:
            return
        log.warning(
            "%s: %s[%d]@%d has a key that belongs to partition %d of %d "
            "(%d such record(s) since the last report): its producer does not hash "
            "keys with murmur2, so per-store order is not kept (see docs/topics.md)",
            self.consumer,
            topic,
            partition,
            offset,
            expected,
            partitions,
            self._unlogged[topic],
        )
        self._logged_at[topic] = now
        self._unlogged[topic] = 0
