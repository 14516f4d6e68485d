"""Avro encoding and decoding in the Confluent wire format.

A message value is ``0x00`` (magic byte), the writer schema id as a 4-byte big-endian
integer, then the Avro binary body (fastavro, schemaless). Decoding resolves the writer
schema to the current version of the same record, so consumers always see today's shape.
Anything wrong with the bytes raises :class:`CodecError`; nothing half-decoded escapes.
"""

from __future__ import annotations

import io
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import fastavro
import fastavro.validation

from tillstream.core.registry import RegistryError, SchemaRegistry
from tillstream.core.schemas import SchemaSet
from tillstream.core.topics import EVENT_TOPICS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SPAN = (datetime.min.replace(tzinfo=UTC) - _EPOCH, datetime.max.replace(tzinfo=UTC) - _EPOCH)
# Raw numbers fastavro writes for these logical types, as far as it can read them back.
_RANGES: dict[str, tuple[int, int]] = {
    "date": ((date.min - _EPOCH.date()).days, (date.max - _EPOCH.date()).days),
    "timestamp-micros": (
        _SPAN[0] // timedelta(microseconds=1),
        _SPAN[1] // timedelta(microseconds=1),
    ),
    "timestamp-millis": (
        _SPAN[0] // timedelta(milliseconds=1),
        _SPAN[1] // timedelta(milliseconds=1),
    ),
}

MAGIC_BYTE = 0
_HEADER = struct.Struct(">BI")  # unsigned: a stray 0xff reads as 0xff, not -0x1


class CodecError(ValueError):
    """A record cannot be encoded, or bytes cannot be decoded; the message says why."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded message value."""

    event: str
    """Event type (schema directory name): ``sale``, ``payment``, ``stock_movement``."""
    schema_id: int
    record: dict[str, Any]


class AvroCodec:
    """Encodes records of the committed event types and decodes any registered schema."""

    def __init__(self, registry: SchemaRegistry, schemas: SchemaSet | None = None) -> None:
        self._registry = registry
        schemas = schemas or SchemaSet()
        # Current version of each event: what we write, and what readers resolve to.
        self._current = {e: schemas.current(e) for e in schemas.versions}
        self._parsed = {e: fastavro.parse_schema(v.definition) for e, v in self._current.items()}
        self._event_of_name = {v.full_name: e for e, v in self._current.items()}
        # fastavro writes any string as a uuid and any number as a date or time, but reads
        # them back with uuid.UUID() and datetime arithmetic: checked first, or a record would
        # be published that no consumer can decode.
        self._checked = {e: _logical_fields(v.definition) for e, v in self._current.items()}
        self._writer_ids: dict[str, int] = {}
        self._readers: dict[int, tuple[str, Any, Any]] = {}

    @property
    def events(self) -> list[str]:
        return sorted(self._current)

    def schema_id(self, event: str) -> int:
        """The id our writer schema of ``event`` has in the registry (registered on first use)."""
        schema_id = self._writer_ids.get(event)
        if schema_id is None:
            if event not in self._current:
                raise CodecError(f"unknown event type {event!r}; known: {self.events}")
            subject = EVENT_TOPICS[event].subject if event in EVENT_TOPICS else f"{event}-value"
            try:
                schema_id = self._registry.register(subject, self._current[event].definition)
            except RegistryError as exc:
                raise CodecError(f"cannot encode {event}: {exc}") from exc
            self._writer_ids[event] = schema_id
        return schema_id

    def encode(self, event: str, record: dict[str, Any]) -> bytes:
        """Serialize ``record`` as ``event`` in the Confluent wire format."""
        schema_id = self.schema_id(event)
        for name, kind in self._checked[event] if isinstance(record, dict) else ():
            if _unreadable(kind, record.get(name)):
                raise CodecError(f"cannot encode {event}: {name} is not a valid {kind}")
        out = io.BytesIO()
        out.write(_HEADER.pack(MAGIC_BYTE, schema_id))
        try:
            fastavro.schemaless_writer(out, self._parsed[event], record)
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
            raise CodecError(f"cannot encode {event}: {self._explain(event, record, exc)}") from exc
        return out.getvalue()

    def decode(self, data: bytes | None) -> Decoded:
        """Parse a Confluent-framed Avro value. Raises :class:`CodecError` on any defect."""
        if data is None:  # a tombstone: compaction's delete marker, never an event
            raise CodecError("a tombstone (null value) is not an event")
        if len(data) < _HEADER.size:
            raise CodecError(f"message too short for the wire format: {len(data)} bytes")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise CodecError(f"not Confluent wire format: magic byte {magic:#04x}, expected 0x00")
        event, writer, reader = self._reader_for(schema_id)
        body = io.BytesIO(data)
        body.seek(_HEADER.size)
        try:
            record = fastavro.schemaless_reader(body, writer, reader)
        except Exception as exc:  # fastavro raises many types on bad bytes; all mean the same
            raise CodecError(
                f"cannot decode {event} (schema id {schema_id}): {type(exc).__name__}: {exc}"
            ) from exc
        if body.tell() != len(data):
            raise CodecError(
                f"cannot decode {event} (schema id {schema_id}): "
                f"{len(data) - body.tell()} bytes left over after the record"
            )
        if not isinstance(record, dict):
            raise CodecError(f"schema id {schema_id} is not a record schema")
        return Decoded(event, schema_id, record)

    def _reader_for(self, schema_id: int) -> tuple[str, Any, Any]:
        cached = self._readers.get(schema_id)
        if cached is None:
            try:
                definition = self._registry.schema_by_id(schema_id)
                writer = fastavro.parse_schema(definition)
            except RegistryError as exc:
                raise CodecError(f"unknown schema id {schema_id}: {exc}") from exc
            except Exception as exc:
                raise CodecError(
                    f"schema id {schema_id} is not a valid Avro schema: {exc}"
                ) from exc
            name = _full_name(definition)
            event = self._event_of_name.get(name, name)
            current = self._current.get(event)
            # Written with today's schema: no resolution (fastavro would compare the two
            # schemas in full on every record). Older writers resolve to today's shape.
            same = current is not None and current.definition == definition
            reader = None if same else self._parsed.get(event, writer)
            cached = self._readers[schema_id] = (event, writer, reader)
        return cached

    def _explain(self, event: str, record: Any, exc: Exception) -> str:
        """A message that names the bad field, if fastavro's validator can find it."""
        if not isinstance(record, dict):
            return f"expected a record (dict), got {type(record).__name__}"
        try:
            fastavro.validation.validate(record, self._parsed[event], raise_errors=True)
        except fastavro.validation.ValidationError as verr:
            return "; ".join(str(e) for e in verr.errors) or str(exc)
        except Exception:
            pass
        return str(exc)


def _logical_fields(definition: Any) -> list[tuple[str, str]]:
    """(name, logical type) of the top-level fields whose values ``_unreadable`` checks."""
    fields = definition.get("fields", []) if isinstance(definition, dict) else []
    return [
        (f["name"], f["type"]["logicalType"])
        for f in fields
        if isinstance(f.get("type"), dict) and f["type"].get("logicalType") in {"uuid", *_RANGES}
    ]


def _unreadable(kind: str, value: Any) -> bool:
    """Whether fastavro would write ``value`` as ``kind`` but fail to read it back."""
    if kind == "uuid":
        if not isinstance(value, str):
            return False
        try:
            uuid.UUID(value)
        except ValueError:
            return True
        return False
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        low, high = _RANGES[kind]
        try:
            return not low <= value <= high  # a float NaN too
        except ArithmeticError:  # a Decimal NaN does not even compare
            return True
    return False


def _full_name(definition: Any) -> str:
    if isinstance(definition, dict) and "name" in definition:
        name = str(definition["name"])
        ns = definition.get("namespace")
        return name if "." in name or not ns else f"{ns}.{name}"
    return str(definition)
