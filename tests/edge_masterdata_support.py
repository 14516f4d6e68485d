"""Master-data tests' helpers: item and price records, publishing them to the compacted topics
as head office does (the project's codec and producer, keyed with item_key/price_key)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx

from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import ITEMS, PRICES, item_key, price_key
from tillstream_edge.masterdata_copy import RawRecord


def gtin13(body: str) -> str:
    """A GTIN-13 of 12 digits and its check digit (GS1 prefix 400-440: Germany)."""
    assert len(body) == 12 and body.isdigit()
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def item(sku: str, *gtins: str, stock_item: bool = True, description: str = "") -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "sku": sku,
        "gtins": list(gtins),
        "description": description or f"Item {sku}",
        "unit_of_measure": "EA",
        "weighed": False,
        "stock_item": stock_item,
        "tax_class": "STD",
        "reorder_point": None,
        "lead_time_days": None,
        "supplier": None,
        "published_at": datetime.now(UTC),
    }


def price(sku: str, amount: str, store: str | None = None, **validity: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "sku": sku,
        "store_id": store,
        "amount": Decimal(amount),
        "currency": "EUR",
        "valid_from": None,
        "valid_from_day": None,
        "valid_until": None,
        "valid_until_day": None,
        "published_at": datetime.now(UTC),
        **validity,
    }


def key_of_price(record: dict[str, Any]) -> bytes:
    start: date | datetime | None = record["valid_from_day"] or record["valid_from"]
    starts = None
    if isinstance(start, datetime):
        starts = start.astimezone(UTC).isoformat()
    elif start is not None:
        starts = start.isoformat()
    return price_key(record["store_id"], record["sku"], starts)


async def publish(
    settings: Settings,
    codec: AvroCodec,
    *,
    items: Iterable[dict[str, Any]] = (),
    prices: Iterable[dict[str, Any]] = (),
    deleted_items: Iterable[str] = (),
    deleted_prices: Iterable[dict[str, Any]] = (),
) -> int:
    """Publish as head office does; returns the records sent (all acknowledged)."""
    producer = make_producer(settings, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        pending: list[asyncio.Future[Any]] = []
        for record in items:
            value = codec.encode("item", record)
            pending.append(await producer.send(ITEMS.name, value, key=item_key(record["sku"])))
        for record in prices:
            value = codec.encode("price", record)
            pending.append(await producer.send(PRICES.name, value, key=key_of_price(record)))
        for sku in deleted_items:
            pending.append(await producer.send(ITEMS.name, None, key=item_key(sku)))
        for record in deleted_prices:
            pending.append(await producer.send(PRICES.name, None, key=key_of_price(record)))
        await asyncio.gather(*pending)
        return len(pending)
    finally:
        await producer.stop()


async def until(seconds: float, check: Any, what: str) -> float:
    """Seconds until ``await check()`` (or ``check()``) is true; fails after ``seconds``."""
    start = time.monotonic()
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds}s: {what}")
        await asyncio.sleep(0.2)


async def get_json(url: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(url, headers=headers)
        return answer.status_code, answer.json()


class Topics:
    """Records as the topics would hand them out, with offsets."""

    def __init__(self, codec: AvroCodec) -> None:
        self.codec = codec
        self.offsets = {ITEMS.name: 0, PRICES.name: 0}

    def _next(self, topic: str, key: bytes, value: bytes | None) -> RawRecord:
        offset = self.offsets[topic]
        self.offsets[topic] += 1
        return RawRecord(topic, 0, offset, key, value, 1_700_000_000_000 + offset)

    def item(self, record: dict[str, Any]) -> RawRecord:
        value = self.codec.encode("item", record)
        return self._next(ITEMS.name, item_key(record["sku"]), value)

    def item_gone(self, sku: str) -> RawRecord:
        return self._next(ITEMS.name, item_key(sku), None)

    def price(self, record: dict[str, Any]) -> RawRecord:
        return self._next(PRICES.name, key_of_price(record), self.codec.encode("price", record))

    def price_gone(self, record: dict[str, Any]) -> RawRecord:
        return self._next(PRICES.name, key_of_price(record), None)
