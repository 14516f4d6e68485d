"""What a compacted topic holds now: the latest record per key, read to the end offsets.

Every partition is assigned by hand (no consumer group: nothing is committed, no group ACL
is needed), read from the beginning to the end offsets taken when reading starts. A
tombstone removes its key. A record that cannot be decoded is held as ``None``: its key
exists, but no file row will compare equal to it, so publishing replaces it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.kafka import make_consumer
from tillstream.core.settings import Settings
from tillstream.masterdata.csv_file import PROGRESS_EVERY, Progress

METADATA_SECONDS = 30.0
"""How long a topic just created may take to have a leader for each partition."""
STALL_SECONDS = 60.0
"""How long reading may make no progress before it gives up."""


class TopicReadError(RuntimeError):
    """The topic could not be read to its end."""


@dataclass
class TopicState:
    topic: str
    held: dict[bytes, dict[str, Any] | None] = field(default_factory=dict)
    """Key -> the latest record's content fields (None: undecodable)."""
    records: int = 0
    """Records read (tombstones and replaced versions included)."""


async def read_topic(
    settings: Settings,
    codec: AvroCodec,
    topic: str,
    content: tuple[str, ...],
    progress: Progress | None = None,
) -> TopicState:
    """The topic's current records, by key, with only their ``content`` fields."""
    consumer = make_consumer(settings, group_id=None, max_poll_records=5_000)
    try:  # a failed start is stopped too, not left unclosed
        await consumer.start()
        partitions = await _partitions(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        state = TopicState(topic)
        await _read_to(consumer, codec, ends, content, state, progress)
        return state
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
    codec: AvroCodec,
    ends: dict[TopicPartition, int],
    content: tuple[str, ...],
    state: TopicState,
    progress: Progress | None,
) -> None:
    pending = {tp for tp, end in ends.items() if end > 0}
    last_progress = time.monotonic()
    reported = 0
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1_000)
        for messages in batch.values():
            for msg in messages:
                _hold(state, codec, msg.key, msg.value, content)
        if batch:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > STALL_SECONDS:
            raise TopicReadError(
                f"reading {state.topic} made no progress for {STALL_SECONDS:.0f} s"
            )
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
        if progress is not None and state.records - reported >= PROGRESS_EVERY * 5:
            reported = state.records
            progress(f"{state.topic}: {state.records} records read")
        await asyncio.sleep(0)


def _hold(
    state: TopicState,
    codec: AvroCodec,
    key: bytes | None,
    value: bytes | None,
    content: tuple[str, ...],
) -> None:
    state.records += 1
    if key is None:
        return  # not ours: master data is always keyed
    if value is None:
        state.held.pop(key, None)
        return
    try:
        record = codec.decode(value).record
    except CodecError:
        state.held[key] = None
        return
    state.held[key] = {name: record.get(name) for name in content}
