"""Every event type survives encode -> produce -> consume -> decode on a real broker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from tests.helpers import consume_n, normalized
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import EVENT_TOPICS, PAYMENTS, SALES, STOCK_MOVEMENTS, store_key
from tillstream.dev.samples import sample_payment, sample_sale, sample_stock_movement

pytestmark = pytest.mark.usefixtures("kafka_topics")


async def test_each_event_type_round_trips_through_kafka(
    settings: Settings, codec: AvroCodec, consumer_factory: Callable[..., Any]
) -> None:
    sale = sample_sale("S-RT")
    sent = {
        "sale": sale,
        "payment": sample_payment(sale),
        "stock_movement": sample_stock_movement("S-RT"),
    }
    consumer: AIOKafkaConsumer = await consumer_factory(*(t.name for t in EVENT_TOPICS.values()))
    await consumer.seek_to_end()  # only what this test sends

    producer = make_producer(settings)
    await producer.start()
    try:
        for event, record in sent.items():
            await producer.send_and_wait(
                EVENT_TOPICS[event].name, codec.encode(event, record), key=store_key("S-RT")
            )
    finally:
        await producer.stop()

    got = {}
    for msg in await consume_n(consumer, 3):
        decoded = codec.decode(msg.value)
        assert msg.key == b"S-RT"
        assert msg.topic == EVENT_TOPICS[decoded.event].name
        got[decoded.event] = normalized(decoded.record)
    assert got == sent


async def test_one_store_lands_on_the_same_partition_of_every_topic(
    settings: Settings, codec: AvroCodec
) -> None:
    """Co-partitioning: the key (store id) decides the partition on every store topic."""
    producer = make_producer(settings)
    await producer.start()
    try:
        for store in ("S001", "S002", "S777"):
            sale = sample_sale(store)
            records = [
                (SALES.name, "sale", sale),
                (PAYMENTS.name, "payment", sample_payment(sale)),
                (STOCK_MOVEMENTS.name, "stock_movement", sample_stock_movement(store)),
            ]
            seen = set()
            for topic, event, record in records:
                meta = await producer.send_and_wait(
                    topic, codec.encode(event, record), key=store_key(store)
                )
                seen.add(meta.partition)
            assert len(seen) == 1, f"{store} spread over partitions {seen}"
    finally:
        await producer.stop()
