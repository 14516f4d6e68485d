"""Every consumer believes only what the core rules allow (issues 22 and 23), through the real
broker: records in valid Avro but with impossible values, written straight to the topics
with the codec as the tester did (a business day 30 days ahead, a UTC offset of a million
minutes, an empty receipt number, currency ZZZZZZ, a sale without lines, a negative payment,
a post-void at an impossible offset, a card number or control characters in a description),
and a payment on the sales topic and a sale on the payments topic. The ERP, CRM, analytics
and the sales audit (as tasks, on SQLite with analytics on DuckDB, and on a real PostgreSQL)
each dead-letter every one on their topics,
naming the rule in the dead letter's headers, and apply the valid records around them."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.consumer_support import running, scalar, wait_until
from tests.test_voids_end_to_end import APPLIED, SERVICES, VOIDED, fresh_group
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_consumer, make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import PAYMENTS, SALE_VOIDS, SALES, TILL_EVENTS, store_key
from tillstream.dev.samples import sample_payment, sample_sale, sample_sale_void
from tillstream.simulate.clock import StoreClock
from tillstream.simulate.shifts import store_day_event
from tillstream_consumers.runtime.deadletter import DeadLetter, topic_for

pytestmark = pytest.mark.usefixtures("kafka_topics")


@pytest.fixture(params=["embedded", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """A database per service: SQLite (analytics: DuckDB), or one real PostgreSQL."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return dict.fromkeys(SERVICES, url)
    made = {name: f"sqlite:///{tmp_path / f'{name}.db'}" for name in SERVICES}
    made["analytics"] = f"duckdb:///{tmp_path / 'analytics.duckdb'}"
    return made


@dataclass(frozen=True)
class Impossible:
    """A record no consumer may apply, and what its dead letter must say."""

    what: str
    event: str
    topic: str
    record: dict[str, Any]
    reason: str = "broken-rule"
    rule: str = ""


def impossible(store: str, customer: str, at: datetime, voided: dict[str, Any]) -> list[Impossible]:
    def sale(**changes: Any) -> dict[str, Any]:
        return {**sample_sale(store, at=at, customer=customer), **changes}

    ahead = sale()
    ahead["business_day"] += timedelta(days=30)
    payment = sample_payment(sale()) | {"amount": Decimal("-2.08")}
    clock = StoreClock(60)
    clock.open(at)
    till_event = store_day_event("STORE_DAY_OPEN", store, clock, at, random.Random(1))[1]
    till_event["business_day"] += timedelta(days=30)
    void = sample_sale_void(voided) | {"utc_offset_minutes": 5000}
    carded, nul = sale(), sale()
    carded["lines"] = [
        {**carded["lines"][0], "description": "GIFT 4111 1111 1111 1111"},
        *carded["lines"][1:],
    ]
    nul["lines"] = [{**nul["lines"][0], "description": "BANANAS\x00\x1b[2J"}, *nul["lines"][1:]]
    return [
        Impossible(
            "a card number in a line's description",
            "sale",
            SALES.name,
            carded,
            "card-number",
            "lines[0].description",
        ),
        Impossible(
            "NUL and ESC in a line's description",
            "sale",
            SALES.name,
            nul,
            rule="lines[0].description",
        ),
        Impossible("a business day 30 days ahead", "sale", SALES.name, ahead, rule="business_day"),
        Impossible(
            "an offset of a million minutes",
            "sale",
            SALES.name,
            sale(utc_offset_minutes=1_000_000),
            rule="utc_offset_minutes",
        ),
        Impossible(
            "an empty receipt number",
            "sale",
            SALES.name,
            sale(receipt_number=""),
            rule="receipt_number",
        ),
        Impossible("currency ZZZZZZ", "sale", SALES.name, sale(currency="ZZZZZZ"), rule="currency"),
        Impossible("a sale without lines", "sale", SALES.name, sale(lines=[]), rule="lines"),
        Impossible("a negative payment", "payment", PAYMENTS.name, payment, rule="amount"),
        Impossible(
            "a store-day a month ahead",
            "till_event",
            TILL_EVENTS.name,
            till_event,
            rule="business_day",
        ),
        Impossible(
            "a post-void at an impossible offset",
            "sale_void",
            SALE_VOIDS.name,
            void,
            rule="utc_offset_minutes",
        ),
        Impossible(
            "a payment on the sales topic",
            "payment",
            SALES.name,
            sample_payment(sale()),
            "wrong-topic",
            "topic",
        ),
        Impossible(
            "a sale on the payments topic", "sale", PAYMENTS.name, sale(), "wrong-topic", "topic"
        ),
    ]


async def write(
    settings: Settings, codec: AvroCodec, records: list[tuple[str, str, dict[str, Any]]]
) -> list[tuple[str, int, int]]:
    """``(topic, event type, record)`` written in order, as valid Avro, keyed by store: where
    each landed, ``(topic, partition, offset)``."""
    producer = make_producer(settings)
    await producer.start()
    try:
        landed = []
        for topic, event, record in records:
            key = store_key(record["store_id"])
            meta = await producer.send_and_wait(topic, codec.encode(event, record), key=key)
            landed.append((topic, meta.partition, meta.offset))
        return landed
    finally:
        await producer.stop()


async def dead_letters(
    settings: Settings, group: str, wanted: set[tuple[str, int, int]], timeout: float = 90
) -> dict[tuple[str, int, int], DeadLetter]:
    """``group``'s dead letters by their record's source position, read until those of the
    ``wanted`` positions are in (a fresh group reads the session's topics from the start,
    other tests' dead letters included)."""
    kafka = make_consumer(settings, topic_for(group).name, group_id=f"read-{uuid.uuid4().hex}")
    await kafka.start()
    found: dict[tuple[str, int, int], DeadLetter] = {}
    deadline = time.monotonic() + timeout
    try:
        while not wanted <= found.keys() and time.monotonic() < deadline:
            for messages in (await kafka.getmany(timeout_ms=500)).values():
                for msg in messages:
                    letter = DeadLetter.from_headers(msg.headers)
                    found[(letter.topic, letter.partition, letter.offset)] = letter
    finally:
        await kafka.stop()
    return found


async def test_every_consumer_dead_letters_what_breaks_a_rule_or_sits_on_the_wrong_topic(
    kafka_topics: Settings, codec: AvroCodec, urls: dict[str, str]
) -> None:
    store, customer = f"S-IN-{uuid.uuid4().hex[:6]}", f"C-{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC).replace(microsecond=0)
    before, after = (sample_sale(store, at=at, customer=customer) for _ in range(2))
    bad = impossible(store, customer, at, voided=before)
    records = [
        (SALES.name, "sale", before),
        (PAYMENTS.name, "payment", sample_payment(before)),
        *((b.topic, b.event, b.record) for b in bad),
        (SALES.name, "sale", after),
        (PAYMENTS.name, "payment", sample_payment(after)),
    ]
    landed = await write(kafka_topics, codec, records)
    where = dict(zip(landed[2 : 2 + len(bad)], bad, strict=True))
    async with contextlib.AsyncExitStack() as stack:
        consumers = {name: fresh_group(cls, kafka_topics) for name, cls in SERVICES.items()}
        for name, consumer in consumers.items():
            await stack.enter_async_context(running(consumer, kafka_topics, urls[name]))

        def applied(name: str, sale: dict[str, Any]) -> int:
            return int(scalar(urls[name], APPLIED[name], (sale["event_id"],)) or 0)

        await wait_until(
            lambda: all(applied(name, after) for name in SERVICES),
            what="the valid sale after the impossible ones applied everywhere",
        )
        wanted = {
            name: {pos: b for pos, b in where.items() if b.topic in consumer.topics}
            for name, consumer in consumers.items()
        }
        letters = await asyncio.gather(
            *(dead_letters(kafka_topics, c.name, set(wanted[n])) for n, c in consumers.items())
        )
    valid = {landed[0], landed[1], *landed[-2:]}
    for name, got in zip(consumers, letters, strict=True):
        missing = [b.what for pos, b in wanted[name].items() if pos not in got]
        assert not missing, (name, "not dead-lettered", missing)
        assert not valid & got.keys(), (name, "a valid record was dead-lettered")
        for pos, b in wanted[name].items():
            letter = got[pos]
            assert (letter.reason, letter.rule) == (b.reason, b.rule), (name, b.what, letter)
            # A card number is not copied into the dead-letter topic: the letter has no value.
            omitted = "card-number" if b.reason == "card-number" else None
            assert letter.value_omitted == omitted, (name, b.what)
            assert b.rule in letter.error or b.reason == "wrong-topic", (name, letter.error)
        assert applied(name, before) >= 1, (name, "the valid sale before them")
        for b in bad:  # none of the impossible sales left a trace
            if b.event == "sale":
                assert applied(name, b.record) == 0, (name, b.what)
        voided = scalar(urls[name], VOIDED[name], (before["event_id"],)) or 0
        assert voided == 0, (name, "the post-void at an impossible offset was applied")
