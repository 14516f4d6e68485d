"""POSLog control and tender control transactions → till events
(producers/tillstream_edge/poslog_control.py), and the till event rules
(tillstream/core/till_events.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillstream.core import rules
from tillstream.core.codec import AvroCodec
from tillstream.core.registry import FileRegistry
from tillstream.core.schemas import SchemaSet
from tillstream.core.till_events import WITH_AMOUNTS
from tillstream_edge.poslog import PoslogError, PoslogResult, parse_poslog
from tillstream_edge.poslog_control import KINDS
from tillstream_edge.poslog_header import read_header
from tillstream_edge.poslog_xml import parse_xml

DATA = Path(__file__).parent / "data" / "poslog"
NEW_YORK = ZoneInfo("America/New_York")
_CODEC = AvroCodec(FileRegistry(SchemaSet()), SchemaSet())
V6 = 'xmlns="http://www.nrf-arts.org/IXRetail/namespace/" MajorVersion="6"'


def till_events(name: str, **kwargs: Any) -> list[dict[str, Any]]:
    result = parse_poslog((DATA / name).read_bytes(), **kwargs)
    return [r for kind, r in result.events if kind == "till_event"]


def one(body: str, header: str = "") -> bytes:
    """A V6 document of one transaction of till POS2, store 0815, with ``body``."""
    return (
        f"<POSLog {V6}><Transaction><BusinessUnit><UnitID>0815</UnitID></BusinessUnit>"
        "<WorkstationID>POS2</WorkstationID><SequenceNumber>9</SequenceNumber>"
        "<EndDateTime>2024-03-05T10:00:00+01:00</EndDateTime><CurrencyCode>EUR</CurrencyCode>"
        f"{header}{body}</Transaction></POSLog>"
    ).encode()


def test_ncr_21_till_shift() -> None:
    events = till_events("control_ncr_21.xml", default_timezone=NEW_YORK)
    assert [(e["kind"], e["sequence_number"]) for e in events] == [
        ("SIGN_ON", "200"),
        ("LOAN", "201"),
        ("NO_SALE", "202"),
        ("PICKUP", "203"),
        ("PAID_OUT", "204"),
        ("TENDER_DECLARATION", "205"),
        ("TILL_CLOSE", "206"),
        ("SIGN_OFF", "207"),
    ]
    sign_on, loan, no_sale, pickup, paid_out, declared, settled, sign_off = events
    assert (sign_on["store_id"], sign_on["terminal_id"], sign_on["operator_id"]) == (
        "9",
        "34",
        "94",
    )
    # Local times without zone are the store's (EDT), the business day as the till gives it.
    assert sign_on["occurred_at"] == datetime(2017, 9, 30, 11, 58, 10, tzinfo=UTC)
    assert sign_on["utc_offset_minutes"] == -240
    assert sign_on["business_day"] == date(2017, 9, 30)
    assert (sign_on["tenders"], sign_on["currency"]) == ([], None)
    assert loan["tenders"] == [{"tender": "CASH", "amount": Decimal("150.0000")}]
    assert loan["currency"] == "USD"
    assert no_sale["reason"] == "Change for customer"
    # Two cash bags of one pickup, written negative by the till: one positive cash amount.
    assert pickup["tenders"] == [{"tender": "CASH", "amount": Decimal("300.0000")}]
    assert paid_out["tenders"] == [{"tender": "CASH", "amount": Decimal("12.4000")}]
    assert paid_out["reason"] == "Window cleaning"
    assert declared["tenders"] == [
        {"tender": "CASH", "amount": Decimal("402.1000")},
        {"tender": "CARD", "amount": Decimal("611.3500")},
    ]
    # Settlement: what the till expected (TenderSummary/Ending), not its Sales sums.
    assert settled["tenders"] == [
        {"tender": "CASH", "amount": Decimal("403.6000")},
        {"tender": "CARD", "amount": Decimal("611.3500")},
    ]
    assert sign_off["operator_id"] is None
    assert {e["source"] for e in events} == {"poslog"}


def test_ncr_report_request_is_no_till_event_and_is_reported_skipped() -> None:
    result = parse_poslog((DATA / "control_ncr_21.xml").read_bytes())
    assert result.skipped_kinds == {"ControlTransaction": 1}


def test_v6_store_day() -> None:
    events = till_events("control_v6.xml")
    assert [e["kind"] for e in events] == [
        "STORE_DAY_OPEN",
        "TILL_OPEN",
        "OPENING_FLOAT",
        "PAID_IN",
        "PICKUP",
        "TENDER_DECLARATION",
        "TILL_CLOSE",
        "STORE_DAY_CLOSE",
    ]
    opened, till_open, float_, paid_in, _, declared, _, closed = events
    assert (opened["store_id"], opened["terminal_id"], opened["operator_id"]) == (
        "0815",
        "POS2",
        "M17",
    )
    assert till_open["operator_id"] == "C42"
    assert float_["tenders"] == [{"tender": "CASH", "amount": Decimal("150.0000")}]
    # The amount's TenderType as a child element, the reason code kept.
    assert (paid_in["tenders"][0]["tender"], paid_in["reason"]) == ("CASH", "BOTTLE-DEPOSIT-REFUND")
    assert declared["tenders"][1] == {"tender": "VOUCHER", "amount": Decimal("40.0000")}
    # 00:15 on the next calendar day closes the business day of the 5th.
    assert closed["occurred_at"] == datetime(2024, 3, 5, 23, 15, tzinfo=UTC)
    assert (closed["business_day"], closed["utc_offset_minutes"]) == (date(2024, 3, 5), 60)


def test_resent_documents_give_the_same_ids_and_ids_are_unique() -> None:
    for name in ("control_ncr_21.xml", "control_v6.xml"):
        first = [e["event_id"] for e in till_events(name)]
        assert first == [e["event_id"] for e in till_events(name)]
        assert len(set(first)) == len(first)


@pytest.mark.parametrize("name", ["control_ncr_21.xml", "control_v6.xml", "ncr_2x.xml"])
def test_every_till_event_encodes_and_keeps_the_rules(name: str, codec: AvroCodec) -> None:
    for record in till_events(name):
        assert rules.event_problems("till_event", record) == []
        assert codec.decode(codec.encode("till_event", record)).record["kind"] == record["kind"]


def test_training_and_cancelled_control_transactions_are_not_till_events() -> None:
    pickup = "<TenderControlTransaction><TenderPickup><Amount>5</Amount></TenderPickup>"
    for flag in ("<TrainingModeFlag>true</TrainingModeFlag>", "<CancelFlag>true</CancelFlag>"):
        result = parse_poslog(one(pickup + "</TenderControlTransaction>", header=flag))
        assert result.events == [] and len(result.skipped) == 1


def test_card_detail_gives_the_tender_and_the_operator_pan_is_masked() -> None:
    body = (
        "<TenderControlTransaction><TenderDeclaration><Tender><CreditDebit/>"
        "<Amount>10.00</Amount></Tender></TenderDeclaration></TenderControlTransaction>"
    )
    result = parse_poslog(one(body, header="<OperatorID>4111111111111111</OperatorID>"))
    [(_, record)] = result.events
    assert record["tenders"] == [{"tender": "CARD", "amount": Decimal("10.0000")}]
    assert "4111111111111111" not in str(record["operator_id"])
    assert result.masked_pans == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "<TenderControlTransaction><TenderPickup><Tender TenderType='Cash'/></TenderPickup>"
            "</TenderControlTransaction>",
            "TenderPickup: Tender has no Amount",
        ),
        (
            "<TenderControlTransaction><PaidOut><Amount Currency='USD'>5</Amount></PaidOut>"
            "</TenderControlTransaction>",
            "PaidOut/PaidOut/Amount is in USD, the transaction in EUR",
        ),
        (
            "<TenderControlTransaction><PaidIn><Amount>1e3</Amount></PaidIn>"
            "</TenderControlTransaction>",
            "is not a decimal number",
        ),
    ],
)
def test_bad_amounts_set_the_transaction_aside_naming_it(body: str, message: str) -> None:
    [kept] = parse_poslog(one(body)).set_aside
    assert kept.label == "9 (#1)" and message in kept.reason


def set_aside_reason(result: PoslogResult) -> str:
    [kept] = result.set_aside
    return kept.reason


def test_a_control_transaction_without_sequence_number_is_set_aside() -> None:
    data = one("<ControlTransaction><NoSale/></ControlTransaction>").replace(
        b"<SequenceNumber>9</SequenceNumber>", b""
    )
    assert "no SequenceNumber" in set_aside_reason(parse_poslog(data))


def test_amounts_against_the_kind() -> None:
    base = {
        "kind": "PICKUP",
        "currency": "EUR",
        "tenders": [{"tender": "CASH", "amount": Decimal(5)}],
    }
    assert rules.event_problems("till_event", base) == []
    assert rules.event_problems("till_event", {**base, "tenders": []}) == [
        ("tenders", "a PICKUP event needs at least one tender amount")
    ]
    assert rules.event_problems("till_event", {**base, "kind": "NO_SALE"}) == [
        ("tenders", "a NO_SALE event carries no amounts; send an empty list")
    ]
    assert rules.event_problems("till_event", {**base, "currency": None}) == [
        ("currency", "required when the event has tender amounts")
    ]
    negative = {**base, "tenders": [{"tender": "CASH", "amount": Decimal(-1)}]}
    assert [f for f, _ in rules.event_problems("till_event", negative)] == ["tenders[0].amount"]


_ACTS = [(body, name) for body, names in KINDS.items() for name in names]
_TENDER_TYPES = st.sampled_from(["Cash", "CreditDebit", "GiftCard", "Voucher", "Check", ""])
_AMOUNTS = st.decimals(min_value=-(10**6), max_value=10**6, places=2, allow_nan=False)


@given(
    act=st.sampled_from(_ACTS),
    tenders=st.lists(st.tuples(_TENDER_TYPES, _AMOUNTS), max_size=4),
    own_amount=st.none() | _AMOUNTS,
)
def test_any_control_transaction_converted_keeps_the_rules_and_encodes(
    act: tuple[str, str], tenders: list[tuple[str, Decimal]], own_amount: Decimal | None
) -> None:
    body, name = act
    inner = "".join(
        f"<Tender{f' TenderType={kind!r}' if kind else ''}><Amount>{amount}</Amount></Tender>"
        for kind, amount in tenders
    )
    inner += f"<Amount>{own_amount}</Amount>" if own_amount is not None else ""
    result = parse_poslog(one(f"<{body}><{name}>{inner}</{name}></{body}>"))
    if result.set_aside:
        return  # set aside with its reason: fine
    [(event_type, record)] = result.events
    assert event_type == "till_event"
    problems = rules.event_problems("till_event", record)
    # What the converter gives keeps the rules, except a kind about money that the document
    # gives no amount for: that one is refused by them, naming the field.
    if record["kind"] in WITH_AMOUNTS and not record["tenders"]:
        assert [field for field, _ in problems] == ["tenders"]
    else:
        assert problems == []
    assert all(t["amount"] >= 0 for t in record["tenders"])
    assert len({t["tender"] for t in record["tenders"]}) == len(record["tenders"])
    if not problems:
        _CODEC.encode("till_event", record)


def test_a_transaction_header_is_read_one_way_for_sales_and_till_events() -> None:
    # poslog_header: store, workstation, sequence, local time and business day, and the key
    # every event id of the transaction derives from.
    tx = parse_xml(
        b"<Transaction><BusinessUnit><UnitID>S1</UnitID></BusinessUnit>"
        b"<WorkstationID>7</WorkstationID><SequenceNumber>42</SequenceNumber>"
        b"<BusinessDayDate>2026-03-01</BusinessDayDate>"
        b"<ControlTransaction><EndDateTime>2026-03-02T00:30:00</EndDateTime>"
        b"</ControlTransaction></Transaction>",
        max_bytes=4096,
    )
    header = read_header(tx, tx[-1], ZoneInfo("Europe/Berlin"))
    assert header.occurred_at == datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert (header.offset, header.business_day) == (60, date(2026, 3, 1))
    assert header.key == "S1|7|42|2026-03-01"
    no_till = parse_xml(
        b"<Transaction><RetailStoreID>S1</RetailStoreID></Transaction>", max_bytes=4096
    )
    with pytest.raises(PoslogError, match="no WorkstationID"):
        read_header(no_till, no_till, UTC)
