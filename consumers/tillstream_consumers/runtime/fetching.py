"""From what ``getmany`` returned to :class:`Record` objects: decoded, in partition order,
with the next offset to read per partition.

Partitions revoked while the service was busy are left to their new owner; records whose
bytes cannot be decoded are handed back to be dead-lettered (``undecodable``), and so are
records a consumer must not believe (``validity.py``: a broken rule, the wrong topic);
records on another partition than their key's are counted (``partitioning.py``). A null value on a
compacted topic of tillstream's is a tombstone, handed on as a :class:`Record` whose
``tombstone`` is true; anywhere else a null value is undecodable.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.topics import ALL_TOPICS
from tillstream_consumers.runtime.api import Record
from tillstream_consumers.runtime.partitioning import RoutingCheck, TopicPartition
from tillstream_consumers.runtime.validity import Unbelievable, unbelievable

TOMBSTONE_EVENTS = {t.name: t.schema for t in ALL_TOPICS if t.compacted and t.schema}
"""Compacted topic -> the event type of its records (what a tombstone deletes)."""


class Message(Protocol):
    """A record as Kafka gave it (aiokafka's ``ConsumerRecord``): what the runtime reads."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...


@dataclass
class Fetched:
    """A decoded batch: its records, the messages set aside (undecodable, unbelievable), and
    where each partition goes on (the offset after its last message)."""

    records: list[Record] = field(default_factory=list)
    undecodable: list[tuple[Message, CodecError]] = field(default_factory=list)
    unbelievable: list[tuple[Message, Unbelievable]] = field(default_factory=list)
    """Decoded, but breaking a core rule or on the wrong topic: never applied."""
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    messages: dict[tuple[TopicPartition, int], Message] = field(default_factory=dict)
    """Every message of the batch by partition and offset (dead letters carry its bytes)."""

    def message_of(self, record: Record) -> Message:
        return self.messages[(record.topic_partition, record.offset)]


def decode_batch(
    codec: AvroCodec,
    batch: Mapping[TopicPartition, Sequence[Message]],
    assigned: Collection[TopicPartition],
    routing: RoutingCheck,
    partition_count: Callable[[str], int],
) -> Fetched:
    """Decode ``batch``, skipping partitions no longer ``assigned``."""
    fetched = Fetched()
    for tp, messages in batch.items():
        if tp not in assigned or not messages:
            continue  # revoked while we were busy: its new owner reads it
        routing.check(tp.topic, tp.partition, messages, partition_count(tp.topic))
        for msg in messages:
            fetched.messages[(tp, msg.offset)] = msg
            if msg.value is None and msg.topic in TOMBSTONE_EVENTS:
                fetched.records.append(_tombstone(msg))
                continue
            try:
                decoded = codec.decode(msg.value)
            except CodecError as exc:
                fetched.undecodable.append((msg, exc))
                continue
            record = Record.decoded(
                msg.topic,
                msg.partition,
                msg.offset,
                msg.key,
                decoded.event,
                decoded.record,
                msg.timestamp,
                tuple(msg.headers or ()),
            )
            if (refusal := unbelievable(record)) is not None:
                fetched.unbelievable.append((msg, refusal))
            else:
                fetched.records.append(record)
        fetched.positions[TopicPartition(tp.topic, tp.partition)] = messages[-1].offset + 1
    return fetched


def _tombstone(msg: Message) -> Record:
    return Record.deleted(
        msg.topic,
        msg.partition,
        msg.offset,
        msg.key,
        TOMBSTONE_EVENTS[msg.topic],
        msg.timestamp,
        tuple(msg.headers or ()),
    )
