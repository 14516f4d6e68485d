"""Testing a consumer without Kafka: events go through the real codec and the real applier
(migrations, one transaction per batch, event-id dedupe), so a test sees what production
would, in a few lines::

    harness = ConsumerHarness(VisitCounter(), "sqlite:///:memory:")
    harness.apply("sale", sale_1, sale_2)
    assert harness.db.fetchone("SELECT n FROM visits") == (2,)

``harness.delete("item", b"SKU-1")`` applies a tombstone of a compacted topic's key. A
record the runtime would dead-letter (it breaks a core rule: ``validity.py``) raises its
:class:`~tillstream_consumers.runtime.validity.Unbelievable` (a ``PermanentError``) naming
the rule, and nothing of the batch is applied.
Records carry Kafka timestamps as a producer would stamp them: one millisecond apart, in
the order the harness is given them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from tillstream.core.codec import AvroCodec
from tillstream.core.registry import FileRegistry
from tillstream.core.schemas import SchemaSet
from tillstream.core.topics import EVENT_TOPICS
from tillstream_consumers.runtime.api import Consumer, Record
from tillstream_consumers.runtime.applier import Applier, BatchOutcome
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.validity import unbelievable


class ConsumerHarness:
    """A consumer, its database, and a fake partition that hands it events in order."""

    def __init__(self, consumer: Consumer, db_url: str, *, codec: AvroCodec | None = None) -> None:
        schemas = SchemaSet()
        self.consumer = consumer
        self.codec = codec or AvroCodec(FileRegistry(schemas), schemas)
        self.db = Database(db_url)
        self.applier = Applier(consumer, self.db, self.codec.encode)
        self.applier.prepare()
        self._offsets: dict[str, int] = {}
        self._published_ms = int(time.time() * 1000)

    def apply(self, event: str, *records: Mapping[str, Any]) -> BatchOutcome:
        """Apply ``records`` of type ``event`` as one batch, as if read from its topic."""
        return self.apply_events(*((event, record) for record in records))

    def apply_events(
        self, *events: tuple[str, Mapping[str, Any]], published_ms: Sequence[int] = ()
    ) -> BatchOutcome:
        """Apply ``(event type, record)`` pairs, of any types, as one batch in this order;
        ``published_ms``: their Kafka timestamps, where a test reads topics in another
        order than they were published in."""
        batch = []
        for i, (event, record) in enumerate(events):
            topic = EVENT_TOPICS[event].name
            offset = self._offsets.get(topic, 0)
            self._offsets[topic] = offset + 1
            decoded = self.codec.decode(self.codec.encode(event, dict(record)))
            self._published_ms += 1
            stamp = published_ms[i] if published_ms else self._published_ms
            read = Record.decoded(topic, 0, offset, None, event, decoded.record, stamp)
            if (refusal := unbelievable(read)) is not None:
                raise refusal  # the runtime dead-letters it before apply
            batch.append(read)
        positions = {r.topic_partition: self._offsets[r.topic] for r in batch}
        return self.applier.apply(batch, positions)

    def delete(self, event: str, *keys: bytes) -> BatchOutcome:
        """Apply tombstones of ``keys`` on the (compacted) topic of ``event`` as one batch:
        what publishing a deletion of items or prices comes to (``Record.tombstone``)."""
        topic = EVENT_TOPICS[event].name
        batch = []
        for key in keys:
            offset = self._offsets.get(topic, 0)
            self._offsets[topic] = offset + 1
            batch.append(Record.deleted(topic, 0, offset, key, event, 0))
        return self.applier.apply(batch, {r.topic_partition: self._offsets[topic] for r in batch})

    def published(self) -> list[tuple[str, dict[str, Any]]]:
        """Events the consumer published so far, decoded: ``(topic, record)``."""
        return [(t, self.codec.decode(v).record) for _, t, _, v in self.applier.pending_outgoing()]
