"""A consumer service in its Kafka group: the partitions it holds, where it reads them from,
what it tells Kafka about its progress, and its lag.

Offsets live in the database; on every assignment the service seeks to them
(:meth:`Membership.seek`), so Kafka's committed offsets (:meth:`Membership.commit`, after
each batch, for tools that show lag) only ever trail. Rebalances reach the service through
:class:`Rebalance`, which calls the two methods of :class:`RebalanceHandler`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from tillstream_consumers.runtime import metrics
from tillstream_consumers.runtime.fetching import Message
from tillstream_consumers.runtime.partitioning import TopicPartition

log = logging.getLogger(__name__)

COMMIT_INTERVAL = 1.0
"""Seconds between two commits of offsets to Kafka while batches keep coming. The
database holds the offsets that count; Kafka's copy is for tools (consumer-group lag)."""


class Membership:
    """One consumer's ``AIOKafkaConsumer``: reads, seeks, commits and lag."""

    def __init__(self, name: str, kafka: AIOKafkaConsumer) -> None:
        self.name = name
        self.kafka = kafka
        self._to_commit: dict[TopicPartition, int] = {}
        self._committed_at = 0.0

    def assignment(self) -> set[TopicPartition]:
        return set(self.kafka.assignment())

    def partition_count(self, topic: str) -> int:
        """Partitions of ``topic`` as the metadata has them (0 while unknown)."""
        return len(self.kafka.partitions_for_topic(topic) or ())

    async def fetch(
        self, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, Sequence[Message]]:
        batch: dict[TopicPartition, Sequence[Message]] = await self.kafka.getmany(
            timeout_ms=timeout_ms, max_records=max_records
        )
        return batch

    def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self.kafka.seek(tp, offset)

    async def seek_to_beginning(self, partitions: Sequence[TopicPartition]) -> None:
        if partitions:
            await self.kafka.seek_to_beginning(*partitions)

    def applied(self, positions: Mapping[TopicPartition, int]) -> None:
        """Note how far a committed batch went, for the next :meth:`commit`."""
        self._to_commit.update(positions)

    async def commit_due(self) -> None:
        """:meth:`commit`, at most every :data:`COMMIT_INTERVAL`: a commit is a round trip
        to the broker (about a tenth of a small batch's time), and only advisory."""
        if time.monotonic() - self._committed_at >= COMMIT_INTERVAL:
            await self.commit()

    async def commit(self) -> None:
        """Tell Kafka how far we are (advisory: the database is the truth)."""
        self._committed_at = time.monotonic()
        if not self._to_commit:
            return
        assigned = self.kafka.assignment()
        offsets = {tp: o for tp, o in self._to_commit.items() if tp in assigned}
        self._to_commit.clear()
        if offsets:
            try:
                await asyncio.wait_for(self.kafka.commit(offsets), timeout=10)
            except (KafkaError, TimeoutError, OSError) as exc:  # a rebalance, a broker away
                log.debug("%s: commit to Kafka skipped: %s", self.name, exc)

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Drop what this instance knew of partitions it gave up."""
        for tp in partitions:
            self._to_commit.pop(tp, None)
            with contextlib.suppress(KeyError):
                metrics.LAG.remove(self.name, tp.topic, str(tp.partition))

    async def report_lag(self) -> None:
        """The assigned-partitions and lag gauges."""
        assigned = self.kafka.assignment()
        metrics.ASSIGNED.labels(self.name).set(len(assigned))
        for tp in assigned:
            highwater = self.kafka.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(KafkaError, TimeoutError):
                position = await asyncio.wait_for(self.kafka.position(tp), timeout=1)
                lag = max(0, highwater - position)
                metrics.LAG.labels(self.name, tp.topic, str(tp.partition)).set(lag)

    async def leave(self) -> None:
        """Commit, and leave the group (so the others take over at once)."""
        await self.commit()
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            await asyncio.wait_for(self.kafka.stop(), timeout=15)


class RebalanceHandler(Protocol):
    """What a service does when the group moves partitions."""

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before ``revoked`` are given up: finish the batch in flight, commit."""

    async def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """After ``assigned`` were received: seek to the database's offsets."""


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka's listener, handing rebalances to a :class:`RebalanceHandler`."""

    def __init__(self, handler: RebalanceHandler) -> None:
        self.handler = handler

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.handler.partitions_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.handler.partitions_assigned(set(assigned))
