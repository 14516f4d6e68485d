"""The edge HTTP API against a real broker: durable, exactly once per event id, in order."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.edge_support import dumps, payment_json, sale_json, stock_json
from tests.helpers import consume_n
from tillstream.core.codec import AvroCodec
from tillstream.core.topics import PAYMENTS, SALES, STOCK_MOVEMENTS

pytestmark = pytest.mark.usefixtures("kafka_topics")


async def read_store(
    consumer_factory: Any, codec: AvroCodec, store: str, n: int
) -> list[tuple[str, str]]:
    """(topic, event_id) of the store's events, in partition order, until n have arrived."""
    consumer = await consumer_factory(SALES.name, PAYMENTS.name, STOCK_MOVEMENTS.name)
    seen: list[tuple[str, str]] = []
    async with asyncio.timeout(60):
        while len(seen) < n:
            for msg in await consume_n(consumer, 1, timeout=60):
                if msg.key == store.encode():
                    seen.append((msg.topic, str(codec.decode(msg.value).record["event_id"])))
    await asyncio.sleep(2)  # anything extra (a duplicate) would arrive now
    for batch in (await consumer.getmany(timeout_ms=1000)).values():
        seen += [
            (m.topic, str(codec.decode(m.value).record["event_id"]))
            for m in batch
            if m.key == store.encode()
        ]
    return seen


async def test_burst_of_singles_and_batches_arrives_once_in_order(
    edge_factory: Any, consumer_factory: Any, codec: AvroCodec
) -> None:
    store = f"S-{uuid.uuid4().hex[:6]}"
    edge = edge_factory(store)
    singles = [stock_json(store) for _ in range(100)]
    batches = []
    for _ in range(10):
        sale = sale_json(store)
        batches.append([sale, payment_json(sale), *[stock_json(store) for _ in range(18)]])
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        answers = await asyncio.gather(
            *(http.post("/v1/events", content=dumps(e)) for e in singles)
        )
        assert {a.status_code for a in answers} == {202}
        for batch in batches:  # sequential: their order is the till's order
            answer = await http.post("/v1/events", content=dumps(batch))
            assert answer.status_code == 202, answer.text
            assert answer.json()["event_ids"] == [e["event_id"] for e in batch]
        # Tills retry: resubmissions are answered exactly as before and stored once.
        again = await http.post("/v1/events", content=dumps(batches[0]))
        first = await http.post("/v1/events", content=dumps(singles[0]))
        assert again.status_code == 202 and again.json()["event_ids"] == [
            e["event_id"] for e in batches[0]
        ]
        assert first.status_code == 202

    expected = [e["event_id"] for e in singles] + [e["event_id"] for b in batches for e in b]
    seen = await read_store(consumer_factory, codec, store, len(expected))
    counts = Counter(event_id for _, event_id in seen)
    assert set(counts) == set(expected)
    assert max(counts.values()) == 1, "an event arrived twice"
    stock_order = [i for topic, i in seen if topic == STOCK_MOVEMENTS.name]
    batch_stock = [e["event_id"] for b in batches for e in b if e["type"] == "stock_movement"]
    assert [i for i in stock_order if i in set(batch_stock)] == batch_stock
    assert edge.metric("tillstream_edge_events_duplicate_total") == 21


async def test_invalid_events_are_refused_naming_each_field(edge_factory: Any) -> None:
    store = "S-VAL"
    edge = edge_factory(store)
    good = stock_json(store)
    bad_qty = stock_json(store, quantity="1.2345", occurred_at="2026-01-01T10:00:00")
    pan_ref = stock_json(store, reference="card 4111 1111 1111 1111")
    sale = sale_json(store)
    bad_card = payment_json(sale)
    bad_card["card"] = {"brand": "VISA", "last_four": "4111111111111111"}
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        answer = await http.post("/v1/events", content=dumps([good, bad_qty, pan_ref, bad_card]))
        assert answer.status_code == 422
        problems = {p["field"]: p["message"] for p in answer.json()["problems"]}
        assert "events[1].quantity" in problems
        assert "events[1].occurred_at" in problems
        assert "card number" in problems["events[2].reference"]
        assert "events[3].card.last_four" in problems
        assert "4111" not in answer.text  # values are never echoed

        other_store = await http.post("/v1/events", content=dumps(stock_json("S-OTHER")))
        assert other_store.status_code == 422
        assert "store_id" in other_store.text

        float_free = await http.post("/v1/events", content=b'{"type": "stock_movement"')
        assert float_free.status_code == 422

        conflict = dict(good, quantity="99")
        assert (await http.post("/v1/events", content=dumps(good))).status_code == 202
        clash = await http.post("/v1/events", content=dumps(conflict))
        assert clash.status_code == 409
        assert good["event_id"] in clash.text

        huge = await http.post("/v1/events", content=b"[" + b" " * (11 * 1024 * 1024) + b"]")
        assert huge.status_code == 413

        spec = (await http.get("/openapi.json")).json()
        assert "/v1/events" in spec["paths"] and "/v1/poslog" in spec["paths"]
        assert "SaleIn" in spec["components"]["schemas"]
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["store_id"] == store
    # The batch with a card number is counted once, under its own reason; the others as invalid.
    assert edge.metric("tillstream_edge_events_rejected_total", 'reason="card_number"') == 1
    assert edge.metric("tillstream_edge_events_rejected_total", 'reason="invalid"') >= 2
    refusals = [line for line in edge.log().splitlines() if "request refused" in line]
    assert len(refusals) == 5, refusals  # one line per refused request: reason and fields
    assert "refused with 422 (card_number): events[1].occurred_at" in refusals[0]
    assert "events[2].reference" in refusals[0] and "4111" not in edge.log()
    assert edge.metric("tillstream_edge_events_accepted_total") == 1


async def test_sigterm_drains_and_exits_cleanly(
    edge_factory: Any, consumer_factory: Any, codec: AvroCodec
) -> None:
    store = f"S-TERM-{uuid.uuid4().hex[:4]}"
    edge = edge_factory(store)
    events = [stock_json(store) for _ in range(50)]
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        assert (await http.post("/v1/events", content=dumps(events))).status_code == 202
    assert edge.stop() == 0
    assert "stopped; 0 events left in the outbox" in edge.log()
    seen = await read_store(consumer_factory, codec, store, 50)
    assert {i for _, i in seen} == {e["event_id"] for e in events}
