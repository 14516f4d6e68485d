"""POSLog of five vendor flavours: every sale converted once, totals and payments that add up.

The files under tests/data/poslog/vendors/ are written by the project in the shapes those
vendors use (NCR ACS 2.1, Wincor TP.net 2.2, roqqio V6, a V6 without vendor extensions, a 2.2
kiosk file without namespace). Each covers voids, returns, discounts, deposits, change and
card/cash mixes; the converter's reading of them is checked here directly and through a
real edge to Kafka.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.edge_support import live_poslog
from tests.fuzz_support import EdgeIntake
from tillstream.core import rules
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_consumer
from tillstream.core.settings import Settings
from tillstream.core.topics import PAYMENTS, SALES, TILL_EVENTS
from tillstream_edge.dropfolder import DropFolder
from tillstream_edge.importer import import_files
from tillstream_edge.models import CardIn
from tillstream_edge.poslog import PoslogResult, parse_poslog

VENDORS = Path(__file__).parent / "data" / "poslog" / "vendors"
STORES = {  # file: the store it comes from
    "ncr_acs21.xml": "2101",
    "wincor_tpnet22.xml": "2202",
    "roqqio_v6.xml": "6100",
    "decathlon_v6.xml": "70",
    "kiosk_22_nons.xml": "K17",
}


def load(name: str) -> PoslogResult:
    return parse_poslog((VENDORS / name).read_bytes())


def sales_of(result: PoslogResult) -> dict[str, dict[str, Any]]:
    return {r["receipt_number"]: r for kind, r in result.events if kind == "sale"}


def payments_of(result: PoslogResult, sale: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        r
        for kind, r in result.events
        if kind == "payment" and r["sale_event_id"] == sale["event_id"]
    ]


def paid(payments: Sequence[Mapping[str, Any]]) -> Decimal:
    """What the customer paid: captured money in, refunded money out (voided: nothing)."""
    sign = {"CAPTURED": 1, "REFUNDED": -1}
    return sum((sign.get(p["status"], 0) * Decimal(p["amount"]) for p in payments), Decimal(0))


def retail_sequences(name: str) -> list[str]:
    """Sequence numbers of the file's RetailTransactions (the sales it holds)."""
    root = ET.fromstring((VENDORS / name).read_bytes())
    return [
        next(e.text or "" for e in tx if e.tag.rsplit("}", 1)[-1] == "SequenceNumber")
        for tx in root
        if any(e.tag.rsplit("}", 1)[-1] == "RetailTransaction" for e in tx)
    ]


@pytest.mark.parametrize("name", list(STORES))
def test_every_sale_converts_once_with_totals_and_payments_that_add_up(name: str) -> None:
    result = load(name)
    sales = sales_of(result)
    assert sorted(sales) == sorted(retail_sequences(name))  # every sale, exactly once
    assert len({s["event_id"] for s in sales.values()}) == len(sales)
    for number, sale in sales.items():
        assert sale["store_id"] == STORES[name]
        assert rules.sale_problems(sale) == [], number
        payments = payments_of(result, sale)
        assert payments, number
        assert paid(payments) == sale["totals"]["net_amount"], number
    payment_ids = [r["event_id"] for kind, r in result.events if kind == "payment"]
    assert len(set(payment_ids)) == len(payment_ids)


def test_ncr_change_logged_as_a_negative_tender_is_not_a_refund() -> None:
    result = load("ncr_acs21.xml")
    sale = sales_of(result)["501"]
    # 10.00 cash given, a "tender" of -3.58 holding TenderChange handed back: 6.42 cash kept.
    [cash] = payments_of(result, sale)
    assert (cash["method"], cash["status"], cash["amount"]) == ("CASH", "CAPTURED", Decimal("6.42"))
    assert sale["totals"]["net_amount"] == Decimal("6.42")
    # A negative tender without TenderChange is money paid back: a refund.
    returned = sales_of(result)["503"]
    [refund] = payments_of(result, returned)
    assert (refund["status"], refund["amount"]) == ("REFUNDED", Decimal("2.38"))


@pytest.mark.parametrize(
    ("name", "receipt", "sku"),
    [
        ("ncr_acs21.xml", "502", "028400090865"),
        ("wincor_tpnet22.xml", "7001", "4008400402222"),
        ("roqqio_v6.xml", "3617", "4025929673704"),
    ],
)
def test_a_voided_line_is_a_sale_and_the_void_cancelling_it(
    name: str, receipt: str, sku: str
) -> None:
    sale = sales_of(load(name))[receipt]
    voided = [ln for ln in sale["lines"] if ln["sku"] == sku]
    assert [ln["kind"] for ln in voided] == ["SALE", "VOID"]
    assert voided[0]["extended_amount"] == voided[1]["extended_amount"]
    assert voided[0]["tax_amount"] == voided[1]["tax_amount"]
    assert voided[1]["line_number"] == voided[0]["line_number"] + 1
    assert rules.totals_problems(sale) == []


_CANCELLED_BY_LINK = """<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/">
  <Transaction>
    <RetailStoreID>502</RetailStoreID><WorkstationID>2</WorkstationID>
    <SequenceNumber>2729</SequenceNumber><BusinessDayDate>2018-07-14</BusinessDayDate>
    <EndDateTime>2018-07-14T14:25:39</EndDateTime><OperatorID>110219</OperatorID>
    <CurrencyCode>AED</CurrencyCode>
    <RetailTransaction Version="2.2">
      <LineItem><SequenceNumber>3</SequenceNumber>
        <Sale ItemType="Stock"><ItemID>32</ItemID><ExtendedAmount>21</ExtendedAmount>
          <Quantity UnitOfMeasureCode="EA">1</Quantity></Sale></LineItem>
      <LineItem VoidFlag="true"><SequenceNumber>4</SequenceNumber>
        <Sale ItemType="Stock"><ItemID>32</ItemID><ExtendedAmount>21</ExtendedAmount>
          <Quantity UnitOfMeasureCode="EA">1</Quantity><ItemLink>3</ItemLink></Sale></LineItem>
      <Total TotalType="TransactionNetAmount">0</Total>
      <Total TotalType="TransactionGrandAmount">0</Total>
    </RetailTransaction>
  </Transaction>
</POSLog>"""


def test_a_voided_line_linked_to_an_earlier_one_is_its_cancellation() -> None:
    """Wincor TP.net: the voided line names the line it cancels (``ItemLink``); that line
    stays a line of its own, so the voided one is the VOID alone (data-integrations corpus)."""
    sale = sales_of(parse_poslog(_CANCELLED_BY_LINK.encode()))["2729"]
    assert [(ln["kind"], ln["sku"], ln["extended_amount"]) for ln in sale["lines"]] == [
        ("SALE", "32", Decimal("21")),
        ("VOID", "32", Decimal("21")),
    ]
    assert sale["totals"]["gross_amount"] == Decimal("0")
    unlinked = _CANCELLED_BY_LINK.replace("<ItemLink>3</ItemLink>", "")
    # Without the link the voided line is rung and voided (a pair), and the totals of 0
    # no longer add up: the transaction is set aside, not misread.
    assert [k.sequence_number for k in parse_poslog(unlinked.encode()).set_aside] == ["2729"]


def test_a_voided_return_line_took_nothing_back() -> None:
    document = (VENDORS / "decathlon_v6.xml").read_text()
    voided = document.replace(
        "<LineItem>\n        <SequenceNumber>1</SequenceNumber>\n        <Return",
        '<LineItem VoidFlag="true">\n        <SequenceNumber>1</SequenceNumber>\n        <Return',
        1,
    )
    assert voided != document
    # The only line of the refund receipt voided: no line is left, so the receipt is set aside.
    kept = {k.sequence_number: k.reason for k in parse_poslog(voided.encode()).set_aside}
    assert "no Sale or Return" in kept["90212"]


def test_ncr_loyalty_rewards_are_a_discount_counted_once() -> None:
    """A monetary reward logged in detail and again as a summary is 0.50 off, once; a
    CustomOffer reward of +1 is points granted, not money."""
    sale = sales_of(load("ncr_acs21.xml"))["501"]
    assert sale["totals"]["discount_amount"] == Decimal("0.50")
    gross, discount, tax = (
        sale["totals"][k] for k in ("gross_amount", "discount_amount", "tax_amount")
    )
    assert gross - discount + tax == sale["totals"]["net_amount"]  # US sales tax: added


def test_receipt_discount_line_items_and_price_modifiers() -> None:
    sale = sales_of(load("wincor_tpnet22.xml"))["7001"]
    pens = sale["lines"][0]
    assert (pens["unit_price"], pens["discount_amount"], pens["extended_amount"]) == (
        Decimal("1.20"),
        Decimal("0.30"),
        Decimal("3.30"),
    )
    assert sale["totals"]["discount_amount"] == Decimal("1.00")  # the Discount line item


def test_deposits_gift_cards_and_bottle_refunds_are_not_stock() -> None:
    """Every line says whether it moves stock; a deposit return stays a RETURN line of
    money, not of goods."""
    not_stock = {
        (name, ln["sku"], ln["kind"])
        for name in STORES
        for sale in sales_of(load(name)).values()
        for ln in sale["lines"]
        if ln["stock_item"] is False
    }
    assert not_stock == {
        ("ncr_acs21.xml", "DEP10", "SALE"),  # "BOTTLE DEPOSIT" (ItemType says Stock)
        ("ncr_acs21.xml", "DEPRET", "RETURN"),  # "BOTTLE REFUND", a negative amount
        ("wincor_tpnet22.xml", "PFAND025", "SALE"),  # ItemType="Deposit"
        ("wincor_tpnet22.xml", "LEERGUT", "RETURN"),  # ItemType="DepositRefund"
        ("decathlon_v6.xml", "GIFTCARD", "SALE"),  # ItemType="GiftCard"
    }


_LINE = (
    "<Transaction><RetailStoreID>1</RetailStoreID><WorkstationID>2</WorkstationID>"
    "<SequenceNumber>5</SequenceNumber><EndDateTime>2025-03-14T10:00:00+01:00</EndDateTime>"
    "<RetailTransaction><LineItem><Sale><ItemID>X1</ItemID>"
    "<RegularSalesUnitPrice>{price}</RegularSalesUnitPrice><ExtendedAmount>{amount}"
    '</ExtendedAmount><Quantity UnitOfMeasureCode="{code}">{qty}</Quantity></Sale></LineItem>'
    "</RetailTransaction></Transaction>"
)


@pytest.mark.parametrize(
    ("code", "qty", "unit", "quantity", "price"),
    [
        ("EA", "2", "EA", "2", "1.50"),
        ("C62", "2", "EA", "2", "1.50"),
        ("H87", "2", "EA", "2", "1.50"),
        ("PCE", "2", "EA", "2", "1.50"),
        ("PCS", "2", "EA", "2", "1.50"),
        ("ST", "2", "EA", "2", "1.50"),
        ("UN", "2", "EA", "2", "1.50"),
        ("un", "2", "EA", "2", "1.50"),
        ("KGM", "2", "KG", "2", "1.50"),
        ("KG", "2", "KG", "2", "1.50"),
        ("GRM", "2", "G", "2", "1.50"),
        ("G", "2", "G", "2", "1.50"),
        ("LTR", "2", "L", "2", "1.50"),
        ("L", "2", "L", "2", "1.50"),
        ("MTR", "2", "M", "2", "1.50"),
        ("M", "2", "M", "2", "1.50"),
        ("LBR", "2", "KG", "0.907", "3.3069"),  # 2 lb at 1.50/lb: 0.907 kg at 3.3069/kg
        ("LB", "2", "KG", "0.907", "3.3069"),
        ("MLT", "2000", "L", "2", "1500.0000"),
        ("CMT", "200", "M", "2", "150.0000"),
    ],
)
def test_un_ece_rec20_and_vendor_units(
    code: str, qty: str, unit: str, quantity: str, price: str
) -> None:
    amount = Decimal(qty) * Decimal("1.50")
    document = _LINE.format(price="1.50", amount=amount, code=code, qty=qty)
    [line] = sales_of(parse_poslog(document.encode()))["5"]["lines"]
    assert (line["unit_of_measure"], line["quantity"]) == (unit, Decimal(quantity))
    assert line["unit_price"] == Decimal(price)
    assert line["extended_amount"] == amount  # what was charged never changes


def test_an_unknown_unit_is_refused_naming_the_accepted_codes_not_a_long_value() -> None:
    bag = _LINE.format(price="1", amount="1", code="BAG", qty="1")
    [kept] = parse_poslog(bag.encode()).set_aside
    assert re.search(r"unit of measure 'BAG' is not one .*KGM", kept.reason)
    card = _LINE.format(price="1", amount="1", code="4111111111111111", qty="1")
    [kept] = parse_poslog(card.encode()).set_aside
    assert "4111" not in kept.reason and b"4111111111111111" not in kept.document


def test_card_payments_have_the_http_channels_shape() -> None:
    """``last_four`` is always four digits, else the payment carries no card; the brand is
    read from CreditDebit/@TypeCode where the vendor writes it there."""
    cards = {}
    for name in STORES:
        result = load(name)
        for sale in sales_of(result).values():
            for payment in payments_of(result, sale):
                if payment["method"] == "CARD":
                    cards[(name, sale["receipt_number"])] = payment["card"]
    assert cards == {
        ("ncr_acs21.xml", "502"): {"brand": "VISA", "last_four": "5678", "token": None},
        ("wincor_tpnet22.xml", "7002"): {"brand": "VISA", "last_four": "4242", "token": None},
        ("roqqio_v6.xml", "3617"): None,  # no card number at all
        ("decathlon_v6.xml", "90211"): {"brand": "MASTERCARD", "last_four": "5454", "token": None},
        ("decathlon_v6.xml", "90212"): {"brand": "VISA", "last_four": "0019", "token": None},
        ("kiosk_22_nons.xml", "88001"): {"brand": "VISA", "last_four": "1881", "token": None},
        ("kiosk_22_nons.xml", "88003"): None,  # pre-masked to three digits: "***123"
    }
    for card in cards.values():
        if card is not None:
            CardIn.model_validate(card)  # what the HTTP channel accepts


def test_descriptions_come_from_description_elements_never_item_id_name() -> None:
    described = {
        ln["sku"]: ln["description"]
        for name in STORES
        for sale in sales_of(load(name)).values()
        for ln in sale["lines"]
    }
    assert described["3608419310313"] == "Tente 2 Seconds 2P"  # ItemID Name="SKU" beside it
    assert described["5000112637922"] in ("Gourde 1L", "Water 0.5L")
    assert described["COFFEE-L"] == "Coffee large"  # POSItemDescription (kiosk)
    assert described["4011"] == "BANANAS"
    assert described["8718824914497"] is None  # roqqio: only ItemID/@Name, not read
    assert "SKU" not in described.values()


# --- the drop folder and the backfill import -----------------------------------------------


@pytest.mark.parametrize("name", list(STORES))
def test_drop_folder_and_import_store_every_sale_of_every_vendor_once(
    name: str, tmp_path: Path
) -> None:
    """The file channels: a vendor file dropped is converted whole (nothing set aside), and
    the same file imported again stores nothing twice."""
    intake = EdgeIntake(tmp_path, STORES[name])
    try:
        document = live_poslog((VENDORS / name).read_text()).encode()
        want = {str(r["event_id"]) for _, r in parse_poslog(document).events}
        folder = tmp_path / "drop"
        for sub in ("", "processed", "rejected"):
            (folder / sub).mkdir(exist_ok=True)
        (folder / name).write_bytes(document)
        past = time.time() - 60
        os.utime(folder / name, (past, past))
        assert intake.loop.run(DropFolder(intake.ingestor, folder).scan_once()) == 1
        assert not list((folder / "rejected").iterdir())
        assert (folder / "processed" / name).exists()
        assert set(intake.stored()) == want
        archive = tmp_path / name
        archive.write_bytes(document)
        report = intake.loop.run(import_files(intake.ingestor, intake.outbox, [archive]))
        assert report.failed == {}
        assert sorted(intake.stored()) == sorted(want)  # each event once
    finally:
        intake.close()


# --- through a real edge to Kafka -----------------------------------------------------------


async def _published(
    settings: Settings, codec: AvroCodec, want: set[str], timeout: float = 90
) -> tuple[Counter[str], list[tuple[str, dict[str, Any]]]]:
    """Counts by event id, and the decoded records, of the vendor stores' events."""
    consumer = make_consumer(
        settings,
        SALES.name,
        PAYMENTS.name,
        TILL_EVENTS.name,  # the vendors' sign-on, sign-off and settlement
        group_id=f"vendors-{time.time_ns()}",
    )
    stores = {s.encode() for s in STORES.values()}
    counts: Counter[str] = Counter()
    records: list[tuple[str, dict[str, Any]]] = []

    async def drain(wait_ms: int) -> None:
        for batch in (await consumer.getmany(timeout_ms=wait_ms)).values():
            for message in batch:
                if message.key in stores:
                    decoded = codec.decode(message.value)
                    counts[str(decoded.record["event_id"])] += 1
                    records.append((message.topic, decoded.record))

    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            while not want <= set(counts):
                await drain(500)
        await drain(2000)  # anything published twice would show up now
    finally:
        await consumer.stop()
    return counts, records


@pytest.mark.usefixtures("kafka_topics")
async def test_vendor_files_through_the_edge_publish_every_sale_once_adding_up(
    edge_factory: Any, settings: Settings, codec: AvroCodec
) -> None:
    want: set[str] = set()
    for name, store in STORES.items():
        document = live_poslog((VENDORS / name).read_text()).encode()
        want |= {str(r["event_id"]) for _, r in parse_poslog(document).events}
        edge = edge_factory(store)
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
            first = await http.post("/v1/poslog", content=document)
            again = await http.post("/v1/poslog", content=document)  # a till resending
        assert first.status_code == 202, (name, first.text)
        assert again.json() == first.json()
    counts, records = await _published(settings, codec, want)
    # Every event exactly once (other tests of the session may use these store ids too).
    assert want <= set(counts) and max(counts[i] for i in want) == 1
    records = [(topic, r) for topic, r in records if str(r["event_id"]) in want]
    sales = [r for topic, r in records if topic == SALES.name]
    payments = [r for topic, r in records if topic == PAYMENTS.name]
    assert len(sales) == sum(len(retail_sequences(name)) for name in STORES)
    for sale in sales:
        assert rules.sale_problems(sale) == [], sale["receipt_number"]
        mine = [p for p in payments if p["sale_event_id"] == sale["event_id"]]
        assert paid(mine) == sale["totals"]["net_amount"], sale["receipt_number"]
        assert "REFUNDED" not in {p["status"] for p in mine} or sale["totals"]["net_amount"] < 0
