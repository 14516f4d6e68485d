"""Testing a consumer without Kafka: events go through the real codec and the real applier
(migrations, one transaction per batch, event-id dedupe), so a test sees what production
would, in a few lines::

    harness = ConsumerHarness(VisitCounter(), "sqlite:///:memory:")
    harness.apply("sale", sale_1, sale_2)
    assert harness.db.fetchone("SELECT n FROM visits") == (2,)

An event is named by its type (``"sale"``: an :data:`~tillstream.core.events.EventType`, so a
misspelt one is a type error) or by its topic's constant (``SALES`` of
``tillstream.core.topics``). A record is refused with :class:`UnknownField` when it holds a
field its schema does not have (the codec would drop it silently), and with
:class:`UnknownEvent` when the event type does not exist (at run time too).
``harness.delete("item", b"SKU-1")`` applies a tombstone of a compacted topic's key. A
record the runtime would dead-letter (it breaks a core rule: ``validity.py``) raises its
:class:`~tillstream_consumers.runtime.validity.Unbelievable` (a ``PermanentError``) naming
the rule, and nothing of the batch is applied.
Records carry Kafka timestamps as a producer would stamp them: one millisecond apart, in
the order the harness is given them.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tillstream.core.codec import AvroCodec
from tillstream.core.events import EventType
from tillstream.core.registry import FileRegistry
from tillstream.core.schemas import SchemaSet
from tillstream.core.topics import ALL_TOPICS, EVENT_TOPICS, TopicSpec
from tillstream_consumers.runtime.api import Consumer, Record
from tillstream_consumers.runtime.applier import Applier, BatchOutcome
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.validity import unbelievable

Event = EventType | TopicSpec
"""What names an event's type to the harness: ``"sale"``, or a topic constant (``SALES``)."""


class UnknownEvent(ValueError):
    """No event type of that name (``"sales"``: the topic's, not its event type's)."""


class UnknownField(ValueError):
    """A record holds a field its event's schema does not have (misspelt?)."""


class ConsumerHarness:
    """A consumer, its database, and a fake partition that hands it events in order."""

    def __init__(self, consumer: Consumer, db_url: str, *, codec: AvroCodec | None = None) -> None:
        schemas = SchemaSet()
        self.schemas = schemas
        self.consumer = consumer
        self.codec = codec or AvroCodec(FileRegistry(schemas), schemas)
        self.db = Database(db_url)
        self.applier = Applier(consumer, self.db, self.codec.encode)
        self.applier.prepare()
        self._offsets: dict[str, int] = {}
        self._published_ms = int(time.time() * 1000)

    def apply(self, event: Event, *records: Mapping[str, Any]) -> BatchOutcome:
        """Apply ``records`` of type ``event`` as one batch, as if read from its topic."""
        return self.apply_events(*((event, record) for record in records))

    def apply_events(
        self, *events: tuple[Event, Mapping[str, Any]], published_ms: Sequence[int] = ()
    ) -> BatchOutcome:
        """Apply ``(event type, record)`` pairs, of any types, as one batch in this order;
        ``published_ms``: their Kafka timestamps, where a test reads topics in another
        order than they were published in."""
        batch = []
        for i, (named, record) in enumerate(events):
            event = event_type(named)
            self._refuse_unknown_fields(event, record)
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

    def delete(self, named: Event, *keys: bytes) -> BatchOutcome:
        """Apply tombstones of ``keys`` on the (compacted) topic of ``event`` as one batch:
        what publishing a deletion of items or prices comes to (``Record.tombstone``)."""
        event = event_type(named)
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

    def _refuse_unknown_fields(self, event: str, record: Mapping[str, Any]) -> None:
        definition = self.schemas.current(event).definition
        problem = _unknown_field(definition, record, event, {})
        if problem is not None:
            raise UnknownField(problem)


def event_type(event: Event) -> str:
    """The event type ``event`` names; :class:`UnknownEvent` naming the known ones if none."""
    if isinstance(event, TopicSpec):
        if event.schema is None:
            raise UnknownEvent(f"topic {event.name} carries no Avro event type")
        return event.schema
    if event in EVENT_TOPICS:
        return event
    topics = {t.name: t.schema for t in ALL_TOPICS if t.schema}
    topics.update({name.removeprefix("tillstream."): schema for name, schema in topics.items()})
    hint = (
        f"the topic {event!r} carries the event type {topics[event]!r}"
        if event in topics
        else _did_you_mean(event, EVENT_TOPICS)
    )
    raise UnknownEvent(
        f"no event type {event!r}{': ' + hint if hint else ''}; event types are "
        f"{', '.join(sorted(EVENT_TOPICS))}"
    )


def _unknown_field(schema: Any, value: Any, where: str, named: dict[str, Any]) -> str | None:
    """The first field of ``value`` that ``schema`` (Avro, as parsed JSON) does not have,
    at any depth (``sale.lines[0].quantiy``), as a sentence; None if there is none."""
    if isinstance(schema, str):
        schema = named.get(schema, schema)
    if isinstance(schema, list):  # a union: the branch the value fits (records by keys)
        records = [s for s in (named.get(b, b) if isinstance(b, str) else b for b in schema)
                   if isinstance(s, dict) and s.get("type") == "record"]  # fmt: skip
        if isinstance(value, Mapping) and len(records) == 1:
            return _unknown_field(records[0], value, where, named)
        return None
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if kind == "record":
        named[schema["name"]] = schema
        fields = {f["name"]: f["type"] for f in schema["fields"]}
        if not isinstance(value, Mapping):
            return None
        for key in value:
            if key not in fields:
                hint = _did_you_mean(str(key), fields)
                return (
                    f"{where} has no field {key!r}{' (' + hint + ')' if hint else ''}; "
                    f"its fields are {', '.join(fields)}"
                )
        for key, field_type in fields.items():
            if key in value:
                problem = _unknown_field(field_type, value[key], f"{where}.{key}", named)
                if problem is not None:
                    return problem
        return None
    if kind == "array" and isinstance(value, list | tuple):
        for i, item in enumerate(value):
            problem = _unknown_field(schema["items"], item, f"{where}[{i}]", named)
            if problem is not None:
                return problem
        return None
    if isinstance(kind, dict | list):
        return _unknown_field(kind, value, where, named)
    return None


def _did_you_mean(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {close[0]!r}?" if close else ""
