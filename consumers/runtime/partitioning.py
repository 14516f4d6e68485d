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
from functools import lru_cache

from aiokafka.partitioner import murmur2

from consumers.runtime import metrics

log = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 60.0


@lru_cache(maxsize=65_536)  # store ids repeat: hash each once
def _hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def expected_partition(key: bytes, partitions: int) -> int:
    """The partition tillstream's producers (murmur2, as Kafka's Java client) give ``key``."""
    return _hash(key) % partitions


class RoutingCheck:
    """Counts records found on another partition than their key's, and logs them, at most
    once a minute per topic (a misconfigured producer would otherwise flood the log)."""

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self._unlogged: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}

    def check(self, topic: str, partition: int, offset: int, key: bytes | None, count: int) -> bool:
        """Whether the record is where its key belongs (``count``: the topic's partitions;
        keyless records and unknown counts pass)."""
        if key is None or count <= 0:
            return True
        expected = expected_partition(key, count)
        if expected == partition:
            return True
        metrics.MISROUTED.labels(self.consumer, topic).inc()
        self._unlogged[topic] = self._unlogged.get(topic, 0) + 1
        now = time.monotonic()
        if now - self._logged_at.get(topic, -LOG_EVERY_SECONDS) >= LOG_EVERY_SECONDS:
            log.warning(
                "%s: %s[%d]@%d has a key that belongs to partition %d of %d "
                "(%d such record(s) since the last report): its producer does not hash "
                "keys with murmur2, so per-store order is not kept (see docs/topics.md)",
                self.consumer,
                topic,
                partition,
                offset,
                expected,
                count,
                self._unlogged[topic],
            )
            self._logged_at[topic] = now
            self._unlogged[topic] = 0
        return False
