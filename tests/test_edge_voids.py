"""Post-voids (``sale_void``) at the edge: the HTTP channel takes them as the other events
(field rules, the core's rules, till tokens), and every channel's path, ``Ingestor.encode``,
puts them on ``tillstream.sale-voids``, co-partitioned with the store's sales."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.edge_support import dumps, payment_json, read_topic, sale_json, void_json
from tests.test_edge_auth import TOKEN_10001, TOKEN_10002, TOKEN_BACKOFFICE, bearer, tokens_file
from tillstream.core import rules
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.core.topics import SALE_VOIDS, SALES
from tillstream.dev.samples import sample_sale, sample_sale_void
from tillstream_edge.ingest import IngestError, Ingestor
from tillstream_edge.models import ONE_EVENT, SaleVoidIn
from tillstream_edge.outbox import Outbox

pytestmark = pytest.mark.usefixtures("kafka_topics")
STORE = "S-VOID-HTTP"
CARD = "4111 1111 1111 1111"


def fields(answer: httpx.Response) -> list[str]:
    return [p["field"] for p in answer.json()["problems"]]


async def test_http_post_voids_arrive_on_their_topic_and_follow_the_till_rules(
    edge_factory: Any, tmp_path: Path, settings: Settings, codec: AvroCodec
) -> None:
    edge = edge_factory(STORE, args=["--tokens", str(tokens_file(tmp_path))])
    sale = sale_json(STORE, terminal_id="10001")
    void = void_json(sale, terminal_id="10001", voided_amount="2.08", cashier_id="sup-3")
    till = bearer(TOKEN_10001)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        body = dumps([sale, payment_json(sale)])
        sold = await http.post("/v1/events", content=body, headers=till)
        assert sold.status_code == 202, sold.text

        async def refused(event: dict[str, Any], status: int = 422, **headers: str) -> Any:
            answer = await http.post("/v1/events", content=dumps(event), headers=headers or till)
            assert answer.status_code == status, answer.text
            return answer

        # The field rules of every event: times with a zone, exact decimals, no card number.
        naive = await refused({**void, "occurred_at": void["occurred_at"][:19]})
        assert fields(naive) == ["occurred_at"]
        assert fields(await refused({**void, "voided_amount": "2.08001"})) == ["voided_amount"]
        assert fields(await refused({**void, "voided_amount": "-2.08"})) == ["voided_amount"]
        card = await refused({**void, "reason": f"card {CARD}"})
        assert card.json()["error"] == "card_number" and CARD not in card.text
        for text in ("cashier_id", "voided_receipt_number", "receipt_number"):
            assert (await refused({**void, text: CARD})).json()["error"] == "card_number"
        # The core's rules, with the same words as a consumer's dead letter.
        itself = await refused({**void, "voided_event_id": void["event_id"]})
        assert itself.json()["error"] == "rule" and fields(itself) == ["voided_event_id"]
        assert fields(await refused({**void, "currency": None})) == ["currency"]
        # A till voids as itself only; a stock-only client not at all.
        foreign = await refused(void, 403, **bearer(TOKEN_10002))
        assert fields(foreign) == ["terminal_id"]
        office = await refused(void, 403, **bearer(TOKEN_BACKOFFICE))
        assert fields(office) == ["type"] and "post-voids" in office.text

        first = await http.post("/v1/events", content=dumps(void), headers=till)
        again = await http.post("/v1/events", content=dumps(void), headers=till)  # a retry
        assert first.status_code == 202 and again.status_code == 202, first.text
    got = await read_topic(settings, codec, SALE_VOIDS.name, STORE, 1)
    assert len(got) == 1
    partition, record = got[0]
    assert str(record["voided_event_id"]) == sale["event_id"]
    assert record["voided_amount"] == Decimal("2.0800") and record["currency"] == "EUR"
    assert record["receipt_number"] == void["receipt_number"]
    assert record["voided_receipt_number"] == sale["receipt_number"]
    assert record["cashier_id"] == "sup-3" and record["source"] == "api"
    assert record["occurred_at"].tzinfo is not None
    sales = await read_topic(settings, codec, SALES.name, STORE, 1)
    assert sales[0][0] == partition  # co-partitioned: one store, one partition number


async def test_every_channel_encodes_a_void_through_the_one_accept_path(
    codec: AvroCodec, tmp_path: Path
) -> None:
    """What a POSLog converter hands ``Ingestor.encode`` (fields not checked by a model):
    the same guards, the same rules, the void's topic."""
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    ingestor = Ingestor("S001", codec, outbox)
    try:
        void = sample_sale_void(sample_sale("S001"))
        event = ingestor.encode("sale_void", void, "poslog")  # its ids are not card numbers
        assert (event.topic, event.key) == (SALE_VOIDS.name, b"S001")
        assert codec.decode(event.value).record["voided_event_id"] == uuid.UUID(
            void["voided_event_id"]
        )
        with pytest.raises(IngestError, match="reason: looks like a card number") as err:
            ingestor.encode("sale_void", {**void, "reason": CARD}, "poslog")
        assert err.value.reason == "card_number"
        with pytest.raises(IngestError, match="voided_amount") as err:
            ingestor.encode("sale_void", {**void, "voided_amount": Decimal(-1)}, "poslog")
        assert err.value.reason == "rule"
        with pytest.raises(IngestError, match="store_id"):
            ingestor.encode("sale_void", {**void, "store_id": "S002"}, "poslog")
        with pytest.raises(IngestError, match="currency"):  # one store, one currency
            ingestor.encode("sale_void", {**void, "currency": "USD"}, "poslog")
        accepted = await ingestor.accept([event])
        assert accepted.event_ids == [void["event_id"]]
    finally:
        await outbox.close()


def test_the_example_in_docs_edge_is_a_valid_post_void() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "edge.md").read_text()
    section = doc.split("\n## Post-voids", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    body = section.split("-d '", 1)[1].rsplit("'", 1)[0]
    event = ONE_EVENT.validate_json(body)
    assert isinstance(event, SaleVoidIn)
    assert rules.event_problems("sale_void", event.record()) == []
