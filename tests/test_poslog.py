"""POSLog conversion: real-world shapes, personal and card data, determinism, hostile XML."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]
import pytest

from tillstream.core import rules
from tillstream.core.codec import AvroCodec
from tillstream.core.registry import FileRegistry
from tillstream.core.schemas import SchemaSet
from tillstream_edge.poslog import PoslogError, PoslogResult, parse_poslog

DATA = Path(__file__).parent / "data" / "poslog"
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def load(name: str, **kwargs: Any) -> PoslogResult:
    return parse_poslog((DATA / name).read_bytes(), **kwargs)


def of_kind(result: PoslogResult, kind: str) -> list[dict[str, Any]]:
    return [record for event, record in result.events if event == kind]


def all_strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in all_strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in all_strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec(FileRegistry(SchemaSet()))


def test_v6_with_vendor_extensions_customer_and_card() -> None:
    result = load("v6_customer_card.xml", default_timezone=BERLIN)
    [sale] = of_kind(result, "sale")
    card, cash = of_kind(result, "payment")

    assert (sale["store_id"], sale["terminal_id"], sale["receipt_number"]) == (
        "100",
        "10001",
        "4711",
    )
    assert sale["business_day"] == date(2024, 7, 31)
    assert sale["occurred_at"] == datetime(2024, 7, 31, 9, 46, 13, 327000, tzinfo=UTC)
    assert sale["utc_offset_minutes"] == 120  # UTC time in the file; store zone from caller
    assert sale["customer_id"] == "22000129"
    assert sale["cashier_id"] == "17"
    # The voided LineItem: rung up, then cancelled (a SALE and the VOID cancelling it).
    assert [ln["kind"] for ln in sale["lines"]] == ["SALE", "SALE", "SALE", "VOID"]
    first, wrap, darts, void = sale["lines"]
    assert {k: v for k, v in void.items() if k not in ("kind", "line_number")} == {
        k: v for k, v in darts.items() if k not in ("kind", "line_number")
    }
    assert rules.sale_problems(sale) == []  # the pair cancels: totals add up
    assert first["gtin"] == "8718824914497"
    assert first["description"] is None  # never ItemID/@Name (vendors write "SKU" there)
    assert (wrap["sku"], wrap["gtin"], wrap["quantity"]) == ("WRAP-01", None, Decimal(2))
    assert (wrap["unit_price"], wrap["discount_amount"], wrap["extended_amount"]) == (
        Decimal(5),
        Decimal(1),
        Decimal(9),
    )
    assert sale["totals"] == {
        "gross_amount": Decimal("35.99"),
        "discount_amount": Decimal(0),
        "tax_amount": Decimal("5.75"),
        "net_amount": Decimal("35.99"),  # ARTS TransactionGrandAmount, not its NetAmount
    }

    assert card["method"] == "CARD" and card["status"] == "CAPTURED"
    assert card["card"] == {"brand": "VISA", "last_four": "1111", "token": "tok_7Hx2"}
    assert card["sale_event_id"] == sale["event_id"]
    # 20.00 cash given, 4.01 change handed back: the store kept 15.99.
    assert (cash["method"], cash["amount"], cash["card"]) == ("CASH", Decimal("15.99"), None)
    assert card["amount"] + cash["amount"] == sale["totals"]["net_amount"]


def test_personal_and_card_data_never_leave() -> None:
    result = load("v6_customer_card.xml")
    texts = " ".join(s for _, record in result.events for s in all_strings(record))
    for personal in (
        "Erika",
        "Mustermann",
        "Heidestrasse",
        "Köln",
        "51147",
        "erika@example.org",
        "555 0100",
        "1964",
        "Max Kassierer",
        "T220001293",
    ):
        assert personal not in texts
    assert "4111111111111111" not in texts.replace(" ", "")
    assert "4111 1111 1111 1111" not in texts
    [sale] = of_kind(result, "sale")
    assert sale["lines"][1]["description"] == "Gift wrap, card ************1111 noted by cashier"
    assert result.masked_pans == 2  # the tender's PAN and the one typed into a description


def test_ncr_2x_local_times_weighed_item_and_control_kept() -> None:
    result = load("ncr_2x.xml", default_currency="EUR", default_timezone=NEW_YORK)
    assert result.skipped == []
    control = [r["kind"] for r in of_kind(result, "till_event")]
    assert control == ["SIGN_ON", "SIGN_OFF", "TILL_CLOSE"]  # tests/test_poslog_control.py
    first, _ = of_kind(result, "sale")
    assert first["store_id"] == "9" and first["currency"] == "USD"  # CurrencyCode wins
    # 02:02:54 local (EDT, -4h) on the calendar day after the business day.
    assert first["occurred_at"] == datetime(2017, 10, 1, 6, 2, 54, tzinfo=UTC)
    assert first["utc_offset_minutes"] == -240
    assert first["business_day"] == date(2017, 9, 30)
    apples, pens = first["lines"]
    assert (apples["quantity"], apples["unit_of_measure"]) == (Decimal("0.734"), "KG")
    assert apples["extended_amount"] == Decimal("2.19")
    assert pens["gtin"] == "4006381333931"
    # Separate Tax line item naming line 2 is attributed to it, and summed into the totals.
    assert (apples["tax_amount"], pens["tax_amount"]) == (Decimal(0), Decimal("0.17"))
    assert first["totals"]["tax_amount"] == Decimal("0.17")
    assert first["totals"]["gross_amount"] == Decimal("4.57")
    assert first["totals"]["net_amount"] == Decimal("4.74")  # no grand total: tenders paid
    card = of_kind(result, "payment")[0]
    assert card["card"] == {"brand": "MASTERCARD", "last_four": "0004", "token": None}
    assert result.masked_pans == 0  # the PAN was masked already by the till


def test_separate_tax_line_without_reference_stays_on_the_receipt() -> None:
    result = load("ncr_2x.xml", default_timezone=NEW_YORK)
    sale = of_kind(result, "sale")[1]
    assert sale["lines"][0]["tax_amount"] == Decimal(0)
    assert sale["totals"]["tax_amount"] == Decimal("0.35")
    assert sale["totals"]["net_amount"] == Decimal("5.35")
    cash = of_kind(result, "payment")[1]
    assert (cash["method"], cash["amount"]) == ("CASH", Decimal("5.35"))  # 10.00 - 4.65 change


def test_return_as_negative_sale_line_with_refund_tender() -> None:
    result = load("return_negative_qty.xml")
    [sale] = of_kind(result, "sale")
    [refund] = of_kind(result, "payment")
    poncho, socks = sale["lines"]
    assert poncho["kind"] == "RETURN" and poncho["quantity"] == Decimal(1)
    assert poncho["extended_amount"] == Decimal("2.99") and poncho["tax_amount"] == Decimal("0.48")
    assert socks["kind"] == "RETURN"
    assert sale["totals"]["gross_amount"] == Decimal("-6.99")
    assert sale["totals"]["net_amount"] == Decimal("-6.99")
    assert (refund["status"], refund["amount"]) == ("REFUNDED", Decimal("6.99"))
    assert sale["utc_offset_minutes"] == 120  # explicit +02:00 kept
    assert result.skipped_kinds == {"RetailTransaction:Voided": 1}


def _reverse_children(element: ET.Element) -> None:
    element[:] = list(reversed(list(element)))
    for sub in element:
        _reverse_children(sub)


@pytest.mark.parametrize("name", ["v6_customer_card.xml", "ncr_2x.xml", "return_negative_qty.xml"])
def test_element_order_does_not_matter(name: str) -> None:
    data = (DATA / name).read_bytes()
    root = SafeET.fromstring(data)
    for tx in root:  # transactions stay in file order; everything inside them is reversed
        _reverse_children(tx)
    reordered = ET.tostring(root)
    assert reordered != data
    assert parse_poslog(reordered).events == parse_poslog(data).events


def test_bare_transaction_root() -> None:
    root = SafeET.fromstring((DATA / "return_negative_qty.xml").read_bytes())
    bare = ET.tostring(root[0])
    result = parse_poslog(bare)
    assert [event for event, _ in result.events] == ["sale", "payment"]


def test_same_bytes_give_same_event_ids() -> None:
    data = (DATA / "v6_customer_card.xml").read_bytes()
    first, second = parse_poslog(data), parse_poslog(data)
    assert first.events == second.events
    ids = [record["event_id"] for _, record in first.events]
    assert len(set(ids)) == len(ids)


# Documents of sales (a document with none is refused: test_a_document_without_a_sale_...).
SALES = sorted(p.name for p in DATA.glob("*.xml") if not p.name.startswith("control_"))


@pytest.mark.parametrize("name", SALES)
def test_every_record_encodes_with_the_real_codec(name: str, codec: AvroCodec) -> None:
    result = load(name)
    assert result.events
    for event, record in result.events:
        codec.decode(codec.encode(event, record))


def _single(body: str, header: str | None = None) -> bytes:
    header = (
        "<BusinessUnit><UnitID>1</UnitID></BusinessUnit><WorkstationID>2</WorkstationID>"
        "<SequenceNumber>77</SequenceNumber><BusinessDayDate>2024-01-02</BusinessDayDate>"
        "<EndDateTime>2024-01-02T10:00:00Z</EndDateTime>"
        if header is None
        else header
    )
    return (
        f'<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/"><Transaction>{header}'
        f"<RetailTransaction>{body}</RetailTransaction></Transaction></POSLog>"
    ).encode()


_LINE = (
    "<LineItem><SequenceNumber>1</SequenceNumber><Sale><ItemID>A</ItemID>"
    "<RegularSalesUnitPrice>1.123456</RegularSalesUnitPrice><Quantity>1.23456</Quantity>"
    "</Sale></LineItem>"
)


def test_amounts_quantized_and_tender_types_mapped() -> None:
    tenders = "".join(
        f'<LineItem><Tender TenderType="{kind}"><Amount>1</Amount></Tender></LineItem>'
        for kind in ("GiftCard", "Voucher", "LoyaltyPoints", "MobileWallet", "Check", "DKT:Cash")
    )
    # Six tenders of 1 and 4.6125 paid back: the 1.3875 the line comes to (1.1235 x 1.235).
    refund = '<LineItem><Tender TenderType="Cash"><Amount>-4.6125</Amount></Tender></LineItem>'
    result = parse_poslog(_single(_LINE + tenders + refund))
    [sale] = of_kind(result, "sale")
    line = sale["lines"][0]
    assert (line["unit_price"], line["quantity"]) == (Decimal("1.1235"), Decimal("1.235"))
    assert all(isinstance(v, Decimal) for v in sale["totals"].values())
    payments = of_kind(result, "payment")
    assert [p["method"] for p in payments] == [
        "GIFT_CARD",
        "VOUCHER",
        "LOYALTY_POINTS",
        "MOBILE",
        "OTHER",
        "CASH",
        "CASH",
    ]
    assert (payments[-1]["status"], payments[-1]["amount"]) == ("REFUNDED", Decimal("4.6125"))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<POSLog><Transaction></POSLog>", "malformed XML"),
        (b"", "empty"),
        (b"<Receipt/>", "neither POSLog nor Transaction"),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
            b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
            b"<POSLog>&lol3;</POSLog>",
            "DTD",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE POSLog [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b"<POSLog><Transaction><RetailStoreID>&xxe;</RetailStoreID></Transaction></POSLog>",
            "DTD",
        ),
        (b"<a>" * 5000 + b"</a>" * 5000, "nested deeper"),
    ],
)
def test_a_document_that_cannot_be_parsed_is_refused_whole(data: bytes, reason: str) -> None:
    with pytest.raises(PoslogError, match=reason):
        parse_poslog(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            _single(
                _LINE,
                header="<RetailStoreID>1</RetailStoreID><WorkstationID>2</WorkstationID>"
                "<EndDateTime>2024-01-02T10:00:00</EndDateTime>",
            ),
            "no SequenceNumber",
        ),
        (
            _single(
                _LINE,
                header="<WorkstationID>2</WorkstationID><SequenceNumber>5</SequenceNumber>"
                "<EndDateTime>2024-01-02T10:00:00</EndDateTime>",
            ),
            "transaction 5 (#1): no store",
        ),
        (_single(_LINE.replace("1.123456", "1,50")), "not a decimal"),
        (_single(_LINE.replace("<Quantity>", '<Quantity UnitOfMeasureCode="BAG">')), "BAG"),
        (
            _single(
                _LINE.replace("<RegularSalesUnitPrice>", '<RegularSalesUnitPrice Currency="USD">')
                + '<LineItem><Tender TenderType="Cash"><Amount Currency="EUR">1</Amount>'
                "</Tender></LineItem>"
            ),
            "is in EUR, the transaction in USD",
        ),
        (
            _single(
                _LINE,
                header="<RetailStoreID>1</RetailStoreID><WorkstationID>2</WorkstationID>"
                "<SequenceNumber>5</SequenceNumber>",
            ),
            "no time: none of EndDateTime, BeginDateTime, ReceiptDateTime, POSLogDateTime",
        ),
    ],
)
def test_an_unconvertible_transaction_is_set_aside_with_its_reason(
    data: bytes, reason: str
) -> None:
    result = parse_poslog(data)
    assert result.events == []
    [kept] = result.set_aside
    assert reason in f"transaction {kept.label}: {kept.reason}"
    assert kept.cause == "unreadable"
    assert b"<" in kept.document  # kept as a document of its own, to be re-run


def set_aside_reason(result: PoslogResult) -> str:
    [kept] = result.set_aside
    return kept.reason


def test_oversized_input_is_refused_before_parsing() -> None:
    data = (DATA / "v6_customer_card.xml").read_bytes()
    with pytest.raises(PoslogError, match="over the limit of 1000 bytes"):
        parse_poslog(data, max_bytes=1000)


def test_one_bad_transaction_is_set_aside_and_costs_the_others_nothing() -> None:
    good = (DATA / "return_negative_qty.xml").read_bytes()
    bad = good.replace(b"<ItemID>SKU-SOCKS-3P</ItemID>", b"")
    body = SafeET.fromstring(good)[0]
    second = ET.tostring(body, encoding="unicode").replace(">1888<", ">1889<")
    document = bad.replace(b"</POSLog>", second.encode() + b"</POSLog>")
    result = parse_poslog(document)
    [kept] = result.set_aside
    assert (kept.label, kept.cause) == ("1888 (#1)", "unreadable")
    assert kept.reason.startswith("line item 2: Return has no")
    assert [s["receipt_number"] for s in of_kind(result, "sale")] == ["1889"]


def test_hundred_transactions_parse_quickly() -> None:
    root = SafeET.fromstring((DATA / "v6_customer_card.xml").read_bytes())
    template = ET.tostring(root[0], encoding="unicode")
    body = "".join(
        template.replace("<ns0:SequenceNumber>4711<", f"<ns0:SequenceNumber>{n}<")
        for n in range(100)
    )
    data = f'<POSLog xmlns:ns0="http://www.nrf-arts.org/IXRetail/namespace/">{body}</POSLog>'
    started = time.perf_counter()
    result = parse_poslog(data.encode())
    elapsed = time.perf_counter() - started
    assert len(of_kind(result, "sale")) == 100
    assert len({r["event_id"] for _, r in result.events}) == 300
    assert elapsed < 2.0


# --- transaction level: kinds, statuses, times, what is skipped and why (#12) ---------------


def test_an_original_transaction_reference_does_not_hide_the_sale() -> None:
    """A kiosk chain's 2.2 file (no namespace) with <OriginalTransaction> before the body."""
    result = load("kiosk_22_nonamespace_original_tx.xml", default_currency="CHF")
    [sale] = of_kind(result, "sale")
    [cash] = of_kind(result, "payment")
    assert (sale["store_id"], sale["receipt_number"]) == ("K17", "5021")
    assert sale["currency"] == cash["currency"] == "CHF"  # none in the file: the store's
    assert [line["sku"] for line in sale["lines"]] == ["4006381333931", "CROISSANT"]
    # The vendor's text total (KioskLoyaltyTier "GOLD") is not read; the ARTS ones are.
    assert sale["totals"]["net_amount"] == Decimal("6.00")
    assert sale["totals"]["tax_amount"] == Decimal("0.39")
    # The drawer opened between receipts is a till event, not skipped.
    assert [r["kind"] for r in of_kind(result, "till_event")] == ["NO_SALE"]
    assert result.skipped == []


def test_a_shipped_online_order_with_only_a_poslog_time_is_a_sale() -> None:
    result = load("v6_online_order_shipped.xml", default_timezone=BERLIN)
    [sale] = of_kind(result, "sale")
    assert sale["receipt_number"] == "880123"
    assert sale["occurred_at"] == datetime(2025, 3, 15, 22, 20, 5, tzinfo=UTC)
    assert sale["utc_offset_minutes"] == 60
    assert sale["business_day"] == date(2025, 3, 15)  # no BusinessDayDate: the local date
    assert sale["totals"]["net_amount"] == Decimal("79.99")
    [ordered] = result.skipped
    assert (ordered.index, ordered.sequence_number, ordered.kind) == (
        2,
        "880124",
        "RetailTransaction:Ordered",
    )
    assert ordered.reason == "status Ordered is not a completed sale"


@pytest.mark.parametrize(
    ("status", "converted"),
    [
        ("Finished", True),
        ("Totaled", True),
        ("Shipped", True),
        ("Delivered", True),
        ("Picked-Up", True),
        ("Suspended", False),
        ("Canceled", False),
        ("Ordered", False),
    ],
)
def test_which_statuses_are_sales(status: str, converted: bool) -> None:
    tender = '<LineItem><Tender TenderType="Cash"><Amount>1.3875</Amount></Tender></LineItem>'
    document = _single(_LINE + tender).replace(
        b"<RetailTransaction>", f'<RetailTransaction TransactionStatus="{status}">'.encode()
    )
    if converted:
        assert of_kind(parse_poslog(document), "sale")
        return
    result = parse_poslog(document)
    assert result.events == [] and result.set_aside == []
    [skip] = result.skipped
    assert skip.kind == f"RetailTransaction:{status}" and status in skip.reason


def test_times_when_begin_and_end_are_missing() -> None:
    header = (
        "<RetailStoreID>1</RetailStoreID><WorkstationID>2</WorkstationID>"
        "<SequenceNumber>5</SequenceNumber><BusinessDayDate>2024-01-02</BusinessDayDate>"
    )
    receipt = "<ReceiptDateTime>2024-01-02T10:05:00Z</ReceiptDateTime>"
    logged = "<POSLogDateTime>2024-01-02T10:09:00Z</POSLogDateTime>"
    both = parse_poslog(_single(receipt + _LINE, header=header + logged))
    assert of_kind(both, "sale")[0]["occurred_at"] == datetime(2024, 1, 2, 10, 5, tzinfo=UTC)
    only_logged = parse_poslog(_single(_LINE, header=header + logged))
    assert of_kind(only_logged, "sale")[0]["occurred_at"] == datetime(2024, 1, 2, 10, 9, tzinfo=UTC)
    assert "BusinessDayDate has no time" in set_aside_reason(
        parse_poslog(_single(_LINE, header=header))
    )


def test_every_control_transaction_becomes_a_till_event_of_its_kind() -> None:
    result = load("control_22_store_day.xml")
    assert result.skipped == []
    assert [(r["sequence_number"], r["kind"]) for r in of_kind(result, "till_event")] == [
        ("201", "SIGN_ON"),
        ("202", "LOAN"),
        ("203", "NO_SALE"),
        ("204", "PAID_IN"),
        ("205", "PAID_OUT"),
        ("206", "PICKUP"),
        ("207", "TENDER_DECLARATION"),
        ("208", "TILL_CLOSE"),
        ("209", "SIGN_OFF"),
    ]


def test_a_control_operation_that_is_no_till_event_is_listed_by_its_precise_kind() -> None:
    document = (
        b'<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/"><Transaction>'
        b"<BusinessUnit><UnitID>1</UnitID></BusinessUnit><WorkstationID>2</WorkstationID>"
        b"<SequenceNumber>77</SequenceNumber><BusinessDayDate>2024-01-02</BusinessDayDate>"
        b"<TenderControlTransaction><SafeSettle/></TenderControlTransaction>"
        b"</Transaction></POSLog>"
    )
    result = parse_poslog(document)
    [skip] = result.skipped
    assert result.events == [] and result.set_aside == []
    assert skip.kind == "SafeSettle"
    assert skip.reason == "a control operation that is no till event (e.g. a report request)"


def test_a_document_without_transactions_is_refused_whole() -> None:
    with pytest.raises(PoslogError, match="holds no Transaction"):
        parse_poslog(b"<POSLog/>")


@pytest.mark.parametrize(
    ("document", "skipped", "set_aside"),
    [
        (b"<POSLog><Transaction/></POSLog>", [], ["Unknown"]),
        (
            b"<POSLog><Transaction><SequenceNumber>4</SequenceNumber><TrainingModeFlag>true"
            b"</TrainingModeFlag><RetailTransaction/></Transaction></POSLog>",
            ["Training"],
            [],
        ),
        (
            b"<POSLog><Transaction><SequenceNumber>4</SequenceNumber>"
            b"<InventoryControlTransaction/></Transaction></POSLog>",
            ["InventoryControlTransaction"],
            [],
        ),
    ],
)
def test_a_document_without_a_sale_is_read_each_transaction_named(
    document: bytes, skipped: list[str], set_aside: list[str]
) -> None:
    """Nothing to publish is no reason to refuse a document: each transaction is skipped
    (not a sale by its nature) or set aside (a body tillstream does not read: re-run later)."""
    result = parse_poslog(document)
    assert [s.kind for s in result.skipped] == skipped
    assert [s.kind for s in result.set_aside] == set_aside


def test_a_reported_kind_or_sequence_never_carries_a_card_number() -> None:
    document = (
        b"<POSLog><Transaction><SequenceNumber>4111 1111 1111 1111</SequenceNumber>"
        b'<RetailTransaction TransactionStatus="x4111111111111111"/></Transaction></POSLog>'
    )
    [skip] = parse_poslog(document).skipped
    text = repr(skip.as_dict())
    assert "4111111111111111" not in text and "4111 1111 1111 1111" not in text
    # Nor can free text become a metric label: the metric counts from a fixed vocabulary.
    assert skip.metric_kind == "RetailTransaction:Other"


def test_a_needed_total_that_is_not_a_number_sets_the_transaction_aside() -> None:
    total = '<Total TotalType="TransactionGrandAmount">n/a</Total>'
    assert "Total TransactionGrandAmount" in set_aside_reason(parse_poslog(_single(_LINE + total)))
    vendor = '<Total TotalType="fu:Rounding">none</Total><Total TotalType="Points">12 pts</Total>'
    assert of_kind(parse_poslog(_single(_LINE + vendor)), "sale")
