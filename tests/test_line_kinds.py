"""What a sale line kind means, written once (``rules.LINE_KINDS``), and lines that are not
stock (``stock_item`` false, sale schema v2): the ERP, the CRM and analytics fed the same
sales agree on units, money and stock. Through the real codec and Applier on SQLite and a
real PostgreSQL (analytics on DuckDB too), and through the edge and a real broker."""

from __future__ import annotations

import io
import struct
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import httpx
import pytest

from tests.edge_support import dumps, sale_json
from tests.helpers import consume_n
from tillstream.core import rules
from tillstream.core.codec import AvroCodec
from tillstream.core.registry import ConfluentRegistry
from tillstream.core.schemas import SchemaSet
from tillstream.core.topics import SALES
from tillstream.dev.samples import sample_sale
from tillstream_consumers.analytics import Analytics, daily_summary
from tillstream_consumers.crm import CrmProfiles
from tillstream_consumers.crm.tables import load_profile
from tillstream_consumers.erp import ErpInventory
from tillstream_consumers.runtime.api import Record
from tillstream_consumers.runtime.testing import ConsumerHarness

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DAY = "2026-03-02"


def line(
    n: int, kind: str, sku: str, qty: str, price: str, *, stock: bool = True
) -> dict[str, Any]:
    amount = Decimal(qty) * Decimal(price)
    return {
        "line_number": n,
        "kind": kind,
        "sku": sku,
        "gtin": None,
        "description": None,
        "quantity": Decimal(qty),
        "unit_of_measure": "EA",
        "unit_price": Decimal(price),
        "discount_amount": Decimal(0),
        "tax_amount": Decimal(0),
        "extended_amount": amount,
        "stock_item": stock,
    }


def sale(store: str, customer: str, minute: int, *lines: dict[str, Any]) -> dict[str, Any]:
    """A valid sale of ``lines`` (tax included, no receipt discount): net = signed lines."""
    value = sample_sale(store, at=AT + timedelta(minutes=minute), customer=customer)
    value["lines"] = list(lines)
    signs = {"SALE": 1, "RETURN": -1, "VOID": -1}  # the documented totals rule, not the code's
    net = sum((signs[ln["kind"]] * ln["extended_amount"] for ln in lines), Decimal(0))
    value["totals"] = {
        "gross_amount": net,
        "discount_amount": Decimal(0),
        "tax_amount": Decimal(0),
        "net_amount": net,
    }
    assert rules.sale_problems(value) == []
    return value


def store_day(store: str, customer: str) -> list[dict[str, Any]]:
    """Three receipts of one customer, with every line kind and a bottle deposit.

    1. Coffee rung up by mistake and voided, two cakes: 6.00.
    2. Three coffees, a cake brought back, four bottle deposits (money only): 61.00.
    3. A coffee brought back, two empty bottles returned (deposit paid back): -21.50.
    """
    return [
        sale(
            store,
            customer,
            0,
            line(1, "SALE", "COFFEE", "1", "21.00"),
            line(2, "VOID", "COFFEE", "1", "21.00"),
            line(3, "SALE", "CAKE", "2", "3.00"),
        ),
        sale(
            store,
            customer,
            10,
            line(1, "SALE", "COFFEE", "3", "21.00"),
            line(2, "RETURN", "CAKE", "1", "3.00"),
            line(3, "SALE", "DEPOSIT", "4", "0.25", stock=False),
        ),
        sale(
            store,
            customer,
            20,
            line(1, "RETURN", "COFFEE", "1", "21.00"),
            line(2, "RETURN", "DEPOSIT", "2", "0.25", stock=False),
        ),
    ]


def test_erp_crm_and_analytics_agree_on_every_line_kind(
    db_url: str, tmp_path: Path, codec: AvroCodec
) -> None:
    store, customer = f"S-{uuid.uuid4().hex[:8]}", f"C-{uuid.uuid4().hex[:8]}"
    sales = store_day(store, customer)
    erp = ConsumerHarness(ErpInventory(), db_url, codec=codec)
    crm = ConsumerHarness(CrmProfiles(), db_url, codec=codec)
    analytics = {  # its own default store, and the database the ERP and CRM share
        "duckdb": ConsumerHarness(Analytics(), f"duckdb:///{tmp_path / 'a.duckdb'}", codec=codec),
        db_url.split(":")[0]: ConsumerHarness(Analytics(), db_url, codec=codec),
    }
    try:
        for harness in (erp, crm, *analytics.values()):
            harness.apply("sale", *sales)

        # ERP: stock and demand, per SKU; a deposit is not stock.
        stock = dict(
            erp.db.fetchall("SELECT sku, on_hand FROM erp_stock WHERE store_id = ?", (store,))
        )
        assert stock == {"COFFEE": -2000, "CAKE": -1000}  # thousandths
        assert erp.db.fetchone(
            "SELECT COUNT(*) FROM erp_ledger WHERE store_id = ? AND sku = 'DEPOSIT'", (store,)
        ) == (0,)
        demand = dict(
            erp.db.fetchall("SELECT sku, units FROM erp_daily_sales WHERE store_id = ?", (store,))
        )
        assert demand == {"COFFEE": 3000, "CAKE": 2000}  # the void cancels; a return is no demand
        suggested = {record["sku"] for _, record in erp.published()}
        assert "DEPOSIT" not in suggested  # nothing to reorder: it is not stock

        profile = load_profile(crm.db, customer)
        assert profile is not None
        assert profile.visits == 3
        assert [(s.currency, s.total) for s in profile.spend] == [("EUR", Decimal("45.50"))]
        assert profile.points == 46  # 6, then 67, then 67 - 21

        for where, an in analytics.items():
            summary = daily_summary(an.db, store, DAY)
            top = {k.sku: (k.units, k.net) for k in summary.top_skus}
            # The voided coffee is in no units and no money; the deposit is no merchandise.
            assert top == {
                "COFFEE": (Decimal(2), Decimal("42.00")),
                "CAKE": (Decimal(1), Decimal("3.00")),
            }, where
            assert summary.units == Decimal(3), where
            assert summary.net == {"EUR": Decimal("45.50")}, where
            assert summary.transactions == 3, where
            # Lines: 1 (the void takes away its line) + 3 + 2; returns: 1 + 2.
            assert summary.returns_rate == Decimal("0.5000"), where

            # All three agree: every SKU's stock moved by minus its net units sold, and the
            # CRM's spend is the analytics' net sales.
            assert {sku: -units * 1000 for sku, (units, _) in top.items()} == stock, where
            assert summary.net["EUR"] == profile.spend[0].total, where
    finally:
        for harness in (erp, crm, *analytics.values()):
            harness.db.close()


def test_a_sale_written_with_schema_v1_is_all_stock(db_url: str, codec: AvroCodec) -> None:
    """Data already on the topic (v1, no ``stock_item``) reads as merchandise."""
    schemas = SchemaSet()
    v1 = schemas.versions["sale"][0]
    assert v1.version == 1 and v1.schema_id is not None
    store = f"S-{uuid.uuid4().hex[:8]}"
    value = sale(store, "C-1", 0, line(1, "SALE", "WATER", "6", "0.50"))
    old = {**value, "lines": [{k: v for k, v in ln.items() if k != "stock_item"}
                               for ln in value["lines"]]}  # fmt: skip
    body = io.BytesIO()
    body.write(struct.pack(">BI", 0, v1.schema_id))
    fastavro.schemaless_writer(body, fastavro.parse_schema(v1.definition), old)
    decoded = codec.decode(body.getvalue())
    assert decoded.schema_id == v1.schema_id
    assert decoded.record["lines"][0]["stock_item"] is True

    erp = ConsumerHarness(ErpInventory(), db_url, codec=codec)
    try:
        record = Record.decoded(SALES.name, 0, 0, None, "sale", decoded.record, 0)
        erp.applier.apply([record], {(SALES.name, 0): 1})
        assert erp.db.fetchone(
            "SELECT on_hand FROM erp_stock WHERE store_id = ? AND sku = 'WATER'", (store,)
        ) == (-6000,)
    finally:
        erp.db.close()


@pytest.mark.usefixtures("kafka_topics")
async def test_the_http_api_carries_stock_item_to_kafka(
    edge_factory: Any, consumer_factory: Any, codec: AvroCodec, tmp_path: Path
) -> None:
    store = f"S-{uuid.uuid4().hex[:6]}"
    edge = edge_factory(store)
    good = sale_json(store)
    good["lines"][1]["stock_item"] = False  # the apples, as if a deposit
    bad = sale_json(store)
    bad["lines"][0]["stock_item"] = "no"
    consumer = await consumer_factory(SALES.name)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        refused = await http.post("/v1/events", content=dumps(bad))
        assert refused.status_code == 422
        assert "stock_item" in refused.text and "boolean" in refused.text.lower()
        answer = await http.post("/v1/events", content=dumps(good))
        assert answer.status_code == 202, answer.text

    record: dict[str, Any] | None = None
    for _ in range(10):  # bounded: the session's topics carry other tests' sales too
        for msg in await consume_n(consumer, 1, timeout=60):
            if msg.key == store.encode():
                decoded = codec.decode(msg.value)
                assert decoded.schema_id == SchemaSet().current("sale").schema_id
                record = decoded.record
        if record is not None:
            break
    assert record is not None and str(record["event_id"]) == good["event_id"]
    assert [ln["stock_item"] for ln in record["lines"]] == [True, False, True]

    erp = ConsumerHarness(ErpInventory(), f"sqlite:///{tmp_path / 'erp.db'}", codec=codec)
    try:
        erp.apply("sale", record)
        skus = {r[0] for r in erp.db.fetchall("SELECT sku FROM erp_ledger")}
        assert skus == {"SKU-MILK-1L", "SKU-BREAD"}
    finally:
        erp.db.close()


@pytest.fixture(params=["duckdb", "sqlite", "postgresql"])
def an_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An analytics store of every kind it runs on."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"{request.param}:///{tmp_path / 'analytics.db'}"


def test_a_voided_line_is_in_no_top_sku(an_url: str, codec: AvroCodec) -> None:
    """The report of #12: net 0.00, yet the voided coffee was the top SKU, 1 unit 21.00."""
    url = an_url
    store = f"S-{uuid.uuid4().hex[:8]}"
    voided = sale(
        store,
        "C-1",
        0,
        line(1, "SALE", "COFFEE", "1", "21.00"),
        line(2, "VOID", "COFFEE", "1", "21.00"),
    )
    an = ConsumerHarness(Analytics(), url, codec=codec)
    try:
        an.apply("sale", voided)
        summary = daily_summary(an.db, store, DAY)
        assert summary.net == {"EUR": Decimal(0)}
        assert summary.units == 0
        assert summary.top_skus == []
        assert an.db.fetchone(
            "SELECT units, net_units FROM an_sku_daily WHERE store_id = ?", (store,)
        ) == (0, 0)
    finally:
        an.db.close()


def test_every_kind_moves_stock_against_its_units_and_money_with_them() -> None:
    """The invariants the consumers' agreement rests on, for every kind there is."""
    sale = SchemaSet().current("sale").definition
    lines = next(f for f in sale["fields"] if f["name"] == "lines")["type"]["items"]
    kind_field = next(f for f in lines["fields"] if f["name"] == "kind")
    assert list(rules.LINE_KINDS) == kind_field["type"]["symbols"]  # every kind has a meaning
    for name, kind in rules.LINE_KINDS.items():
        assert kind.stock == -kind.units, name  # goods sold leave the shelf
        assert kind.money == kind.units == rules.LINE_SIGNS[name], name
        assert kind.demand in (0, kind.units), name
    assert rules.is_stock_item({}) is True  # a v1 line
    assert rules.is_stock_item({"stock_item": False}) is False


def test_a_registry_takes_sale_v2_as_backward_compatible(schema_registry: str) -> None:
    """What an operator's schema registry (BACKWARD, the default) says of the new version."""
    subject = f"tillstream.sales-v2-{uuid.uuid4().hex[:6]}-value"
    put = httpx.put(f"{schema_registry}/config/{subject}", json={"compatibility": "BACKWARD"})
    assert put.status_code == 200
    registry = ConfluentRegistry(schema_registry)
    v1, v2, v3 = (v.definition for v in SchemaSet().versions["sale"])
    v1_id = registry.register(subject, v1)
    assert registry.is_compatible(subject, v2)
    v2_id = registry.register(subject, v2)
    assert v2_id != v1_id
    assert registry.is_compatible(subject, v3)  # v3 adds list_price, null by default
    assert registry.register(subject, v3) not in (v1_id, v2_id)

    # A v1 sale registered there decodes, through the registry, with every line stock.
    body = io.BytesIO()
    body.write(struct.pack(">BI", 0, v1_id))
    value = sample_sale()
    old = {**value, "lines": [{k: v for k, v in ln.items() if k != "stock_item"}
                               for ln in value["lines"]]}  # fmt: skip
    fastavro.schemaless_writer(body, fastavro.parse_schema(v1), old)
    decoded = AvroCodec(registry).decode(body.getvalue())
    assert [ln["stock_item"] for ln in decoded.record["lines"]] == [True, True, True]
