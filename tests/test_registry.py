"""The Confluent Schema Registry client, against a real registry server (Apicurio Registry)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.helpers import consume_n, normalized
from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.kafka import make_producer
from tillstream.core.registry import ConfluentRegistry, FileRegistry, RegistryError
from tillstream.core.schemas import SchemaSet
from tillstream.core.settings import Settings
from tillstream.core.topics import EVENT_TOPICS, SALES, store_key
from tillstream.dev.samples import sample_payment, sample_sale, sample_stock_movement


class CountingTransport(httpx.HTTPTransport):
    """The real HTTP transport, counting requests (to prove the cache works)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


def test_registered_schemas_come_back_by_id(schema_registry: str, schema_set: SchemaSet) -> None:
    registry = ConfluentRegistry(schema_registry)
    ids = {}
    for event, topic in EVENT_TOPICS.items():
        definition = schema_set.current(event).definition
        ids[event] = registry.register(topic.subject, definition)
        assert registry.register(topic.subject, definition) == ids[event]  # idempotent
    assert len(set(ids.values())) == len(ids)

    fresh = ConfluentRegistry(schema_registry)
    for event, schema_id in ids.items():
        fetched = fresh.schema_by_id(schema_id)
        assert fetched["name"] == schema_set.current(event).definition["name"]


def test_codec_over_the_registry_decodes_with_one_lookup_per_id(
    schema_registry: str, schema_set: SchemaSet
) -> None:
    writer = AvroCodec(ConfluentRegistry(schema_registry), schema_set)
    sale = sample_sale()
    records = [
        ("sale", sale),
        ("payment", sample_payment(sale)),
        ("stock_movement", sample_stock_movement()),
    ]
    encoded = [writer.encode(event, record) for event, record in records]

    transport = CountingTransport()
    reader = AvroCodec(ConfluentRegistry(schema_registry, transport=transport), schema_set)
    for _ in range(3):
        for (event, record), data in zip(records, encoded, strict=True):
            decoded = reader.decode(data)
            assert decoded.event == event
            assert normalized(decoded.record) == record
    assert len(transport.requests) == 3, transport.requests
    assert all(r.startswith("GET ") and "/schemas/ids/" in r for r in transport.requests)

    with pytest.raises(CodecError, match="unknown schema id"):
        reader.decode(b"\x00\x00\x0f\x42\x40" + encoded[0][5:])


def test_registry_refuses_an_incompatible_schema(
    schema_registry: str, schema_set: SchemaSet
) -> None:
    subject = "tillstream.compat-test-value"
    http = httpx.put(f"{schema_registry}/config/{subject}", json={"compatibility": "BACKWARD"})
    assert http.status_code == 200
    registry = ConfluentRegistry(schema_registry)
    v1 = schema_set.current("stock_movement").definition
    registry.register(subject, v1)
    compatible = dict(
        v1,
        fields=[
            *v1["fields"],
            {"name": "note", "type": ["null", "string"], "default": None, "doc": "A note."},
        ],
    )
    incompatible = dict(v1, fields=[*v1["fields"], {"name": "note", "type": "string", "doc": "x"}])
    assert registry.is_compatible(subject, compatible)
    assert not registry.is_compatible(subject, incompatible)
    with pytest.raises(RegistryError, match="HTTP 409"):
        registry.register(subject, incompatible)


def test_unreachable_registry_is_a_clear_error(schema_set: SchemaSet) -> None:
    from tillstream.dev.ports import free_port

    registry = ConfluentRegistry(f"http://127.0.0.1:{free_port()}", timeout=1)
    codec = AvroCodec(registry, schema_set)
    with pytest.raises(CodecError, match="schema registry unreachable"):
        codec.encode("sale", sample_sale())


def test_file_registry_refuses_uncommitted_schemas(schema_set: SchemaSet) -> None:
    registry = FileRegistry(schema_set)
    v1 = schema_set.current("sale").definition
    assert registry.register(SALES.subject, v1) == schema_set.current("sale").schema_id
    changed = json.loads(json.dumps(v1))
    changed["fields"].pop()
    with pytest.raises(RegistryError, match="not a committed"):
        registry.register(SALES.subject, changed)


@pytest.mark.usefixtures("kafka_topics")
async def test_round_trip_through_kafka_with_the_registry(
    schema_registry: str,
    schema_set: SchemaSet,
    settings: Settings,
    consumer_factory: Callable[..., Any],
) -> None:
    codec = AvroCodec(ConfluentRegistry(schema_registry), schema_set)
    consumer = await consumer_factory(SALES.name)
    await consumer.seek_to_end()
    sale = sample_sale("S-REG")
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(SALES.name, codec.encode("sale", sale), key=store_key("S-REG"))
    finally:
        await producer.stop()
    [msg] = [m for m in await consume_n(consumer, 1) if m.key == b"S-REG"]
    other_client = AvroCodec(ConfluentRegistry(schema_registry), schema_set)
    assert normalized(other_client.decode(msg.value).record) == sale
