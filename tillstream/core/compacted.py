"""Reading a compacted topic to its end: what it holds now, the latest record per key.

Every partition is assigned by hand (no consumer group: nothing is committed, no group ACL
is needed), read from the beginning to the end offsets taken when reading starts, and each
record handed to the caller in partition order, tombstones (a null value) included: what a
key holds is the last thing handed for it. Head office reads its master data this way
before publishing changes (``tillstream.masterdata``), and the estate's desired state
(``tillstream.fleet``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from typing import Any

from aiokafka import TopicPartition

from tillstream.core.kafka import make_consumer
from tillstream.core.settings import Settings

METADATA_SECONDS = 30.0
"""How long a topic just created may take to have a leader for each partition."""
STALL_SECONDS = 60.0
"""How long reading may make no progress before it gives up."""

Visit = Callable[[bytes | None, bytes | None], None]
"""``visit(key, value)`` for each record read (``value`` None: a tombstone)."""


class TopicReadError(RuntimeError):
    """The topic could not be read to its end."""


async def read_to_end(
    settings: Settings,
    topic: str,
    visit: Visit,
    *,
    partitions: Collection[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Hand every record of ``topic`` (or of its ``partitions``) to ``visit``, from the
    beginning to the end offsets of when reading started; returns how many. ``progress`` is
    told the count now and then."""
    consumer = make_consumer(settings, group_id=None, max_poll_records=5_000)
    try:  # a failed start is stopped too, not left unclosed
        await consumer.start()
        found = await _partitions(consumer, topic)
        wanted = [tp for tp in found if partitions is None or tp.partition in partitions]
        if not wanted:
            return 0
        consumer.assign(wanted)
        await consumer.seek_to_beginning(*wanted)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(wanted)
        return await _read_to(consumer, topic, ends, visit, progress)
    finally:
        await consumer.stop()


async def partition_count(settings: Settings, topic: str) -> int:
    """How many partitions ``topic`` has (once each has a leader)."""
    consumer = make_consumer(settings, group_id=None)
    try:
        await consumer.start()
        return len(await _partitions(consumer, topic))
    finally:
        await consumer.stop()


async def _partitions(consumer: Any, topic: str) -> list[TopicPartition]:
    """The topic's partitions once each has a leader (a topic just created may not yet)."""
    deadline = time.monotonic() + METADATA_SECONDS
    while True:
        # aiokafka's consumer.topics() fetches metadata but does not keep it; the
        # cluster it fetched has the partitions and their leaders.
        cluster = await consumer._client.fetch_all_metadata()
        numbers = cluster.partitions_for_topic(topic) or set()
        partitions = [TopicPartition(topic, n) for n in sorted(numbers)]
        if partitions and all(
            cluster.leader_for_partition(tp) not in (None, -1) for tp in partitions
        ):
            return partitions
        if time.monotonic() > deadline:
            raise TopicReadError(
                f"topic {topic} does not exist, has partitions without a leader, or this "
                "principal may not read it"
            )
        await asyncio.sleep(0.2)


async def _read_to(
    consumer: Any,
    topic: str,
    ends: dict[TopicPartition, int],
    visit: Visit,
    progress: Callable[[int], None] | None,
) -> int:
    pending = {tp for tp, end in ends.items() if end > 0}
    last_progress = time.monotonic()
    records = 0
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1_000)
        for messages in batch.values():
            for msg in messages:
                visit(msg.key, msg.value)
                records += 1
        if batch:
            last_progress = time.monotonic()
            if progress is not None:
                progress(records)
        elif time.monotonic() - last_progress > STALL_SECONDS:
            raise TopicReadError(f"reading {topic} made no progress for {STALL_SECONDS:.0f} s")
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
        await asyncio.sleep(0)
    return records
