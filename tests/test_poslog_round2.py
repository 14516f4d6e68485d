"""POSLog round 2 (issue 21): what three more vendors' real exports showed was misread.

Each test is one reported case, in the smallest document that shows it: envelopes, post-voids,
till operations by their meaning, refunds with change, returns' signs, price modifiers, the
customer's own id. Whole vendor documents are in the conformance corpus
(`tests/test_poslog_corpus.py`).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from tillstream.core import rules
from tillstream_edge.poslog import NAMESPACE, PoslogResult, parse_poslog

ARTS = "http://www.nrf-arts.org/IXRetail/namespace/"


def tx(body: str, *, sequence: str = "10", header: str = "", store: str = "S1") -> str:
    return (
        f"<Transaction><RetailStoreID>{store}</RetailStoreID><WorkstationID>3</WorkstationID>"
        f"<SequenceNumber>{sequence}</SequenceNumber><BusinessDayDate>2026-03-02</BusinessDayDate>"
        f"<EndDateTime>2026-03-02T10:00:00+01:00</EndDateTime><OperatorID>7</OperatorID>"
        f"{header}{body}</Transaction>"
    )


def poslog(*transactions: str) -> bytes:
    return f'<POSLog xmlns="{ARTS}">{"".join(transactions)}</POSLog>'.encode()


def sale(lines: str, *, status: str = "", totals: str = "") -> str:
    opening = f' TransactionStatus="{status}"' if status else ""
    return f"<RetailTransaction{opening}>{lines}{totals}</RetailTransaction>"


def item(
    sku: str, price: str, amount: str, qty: str = "1", kind: str = "Sale", more: str = ""
) -> str:
    return (
        f"<LineItem><{kind}><ItemID>{sku}</ItemID><RegularSalesUnitPrice>{price}"
        f"</RegularSalesUnitPrice><ExtendedAmount>{amount}</ExtendedAmount>"
        f"<Quantity>{qty}</Quantity>{more}</{kind}></LineItem>"
    )


def cash(amount: str, *, change: str = "", type_code: str = "Sale") -> str:
    inner = f"<TenderChange><Amount>{change}</Amount></TenderChange>" if change else ""
    return (
        f'<LineItem><Tender TenderType="Cash" TypeCode="{type_code}"><Amount>{amount}</Amount>'
        f"{inner}</Tender></LineItem>"
    )


def total(kind: str, amount: str) -> str:
    return f'<Total TotalType="{kind}">{amount}</Total>'


def events(result: PoslogResult, kind: str) -> list[dict[str, Any]]:
    return [r for k, r in result.events if k == kind]


def only_sale(result: PoslogResult) -> dict[str, Any]:
    assert result.set_aside == [], [k.reason for k in result.set_aside]
    [found] = events(result, "sale")
    assert rules.sale_problems(found) == []
    return found


# --- one odd transaction never holds back a file -----------------------------------------


def test_an_empty_first_transaction_is_skipped_and_the_sale_after_it_arrives() -> None:
    empty = tx('<RetailTransaction><Extension xmlns="urn:vendor"><Flag>1</Flag></Extension>'
               "</RetailTransaction>", sequence="1")  # fmt: skip
    real = tx(sale(item("A", "34.99", "34.99") + cash("34.99")), sequence="2")
    result = parse_poslog(poslog(empty, real))
    assert [s.kind for s in result.skipped] == ["RetailTransaction:Empty"]
    assert only_sale(result)["totals"]["net_amount"] == Decimal("34.99")


# --- envelopes and where vendors put things ----------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
            f'<POSLog xmlns="{ARTS}">',
            "</POSLog></soap:Body></soap:Envelope>",
        ),
        (
            f'<eai:Exchange xmlns:eai="urn:bus" xmlns:arts="{ARTS}"><eai:Header><eai:Id>1'
            "</eai:Id></eai:Header><eai:Body><arts:POSLog>",
            "</arts:POSLog></eai:Body></eai:Exchange>",
        ),
    ],
    ids=["soap", "bus-exchange"],
)
def test_poslog_is_found_inside_the_usual_envelopes(before: str, after: str) -> None:
    inner = tx(sale(item("A", "2.00", "2.00") + cash("2.00")))
    if "arts:" in before:
        inner = inner.replace("<", "<arts:").replace("<arts:/", "</arts:")
    document = f"{before}{inner}{after}".encode()
    assert only_sale(parse_poslog(document))["lines"][0]["sku"] == "A"


def test_store_in_business_unit_number_and_item_in_item_number() -> None:
    lines = (
        "<LineItem><Sale><Item><ItemNumber>40017</ItemNumber></Item>"
        "<RegularSalesUnitPrice>5.00</RegularSalesUnitPrice><ExtendedAmount>5.00</ExtendedAmount>"
        "<Quantity>1</Quantity></Sale></LineItem>"
    )
    document = poslog(tx(sale(lines + cash("5.00"))).replace(
        "<RetailStoreID>S1</RetailStoreID>",
        "<BusinessUnit><BusinessUnitNumber>0815</BusinessUnitNumber></BusinessUnit>",
    ))  # fmt: skip
    found = only_sale(parse_poslog(document))
    assert (found["store_id"], found["lines"][0]["sku"]) == ("0815", "40017")


# --- post-voids ------------------------------------------------------------------------------


def test_a_post_void_names_the_sale_it_cancels_by_the_sales_own_event_id() -> None:
    original = tx(sale(item("A", "15.48", "15.48") + cash("15.48")), sequence="4209")
    link = (
        '<TransactionLink ReasonCode="Voided"><RetailStoreID>S1</RetailStoreID>'
        "<WorkstationID>3</WorkstationID><SequenceNumber>4209</SequenceNumber>"
        "<BusinessDayDate>2026-03-02</BusinessDayDate></TransactionLink>"
    )
    void = tx(
        sale(link + item("A", "15.48", "-15.48") + cash("-15.48"), status="Voided",
             totals=total("TransactionGrandAmount", "-15.48")),
        sequence="4213",
    )  # fmt: skip
    result = parse_poslog(poslog(original, void))
    [sold] = events(result, "sale")
    [voided] = events(result, "sale_void")
    assert voided["voided_event_id"] == sold["event_id"]
    assert voided["event_id"] not in {sold["event_id"]}
    assert (voided["receipt_number"], voided["voided_receipt_number"]) == ("4213", "4209")
    assert voided["voided_amount"] == Decimal("15.48") and voided["currency"] == "EUR"
    assert voided["cashier_id"] == "7" and voided["source"] == "poslog"
    assert rules.event_problems("sale_void", voided) == []


def test_a_sale_resent_post_voided_cancels_itself_and_a_voided_receipt_is_no_sale() -> None:
    body = item("A", "1.00", "1.00") + cash("1.00")
    resent = parse_poslog(poslog(tx(sale(body, status="PostVoided"), sequence="5")))
    [voided] = events(resent, "sale_void")
    key = "S1|3|5|2026-03-02"
    assert voided["voided_event_id"] == str(uuid.uuid5(NAMESPACE, key))
    assert voided["event_id"] != voided["voided_event_id"]
    abandoned = parse_poslog(poslog(tx(sale(body, status="Voided"), sequence="6")))
    assert abandoned.events == [] and [s.kind for s in abandoned.skipped] == [
        "RetailTransaction:Voided"
    ]


def test_a_transaction_the_till_cancelled_is_skipped_not_refused() -> None:
    body = sale(
        item("A", "10.00", "10.00") + "<LineItem><Tax><Amount>0.80</Amount></Tax></LineItem>"
    )
    cancelled = tx(body, header="<TransactionType>Cancel</TransactionType>")
    result = parse_poslog(poslog(cancelled))
    assert result.events == [] and result.set_aside == []
    assert [s.kind for s in result.skipped] == ["RetailTransaction:Canceled"]


# --- refunds and returns ------------------------------------------------------------------


def test_a_cash_refund_with_change_pays_back_the_tender_less_the_change() -> None:
    lines = item("A", "1548", "1548", kind="Return")
    body = sale(
        lines + cash("2000", change="452", type_code="Refund"),
        totals=total("TransactionGrandAmount", "1548"),
    )
    found = only_sale(parse_poslog(poslog(tx(body))))
    assert found["totals"]["net_amount"] == Decimal("-1548")
    [payment] = events(parse_poslog(poslog(tx(body))), "payment")
    assert (payment["status"], payment["amount"]) == ("REFUNDED", Decimal("1548"))


def test_a_returns_tax_and_net_carry_its_sign_whatever_sign_the_vendor_writes() -> None:
    lines = (
        item("A", "1500", "1500", kind="Return")
        + "<LineItem><Tax><Amount>120</Amount></Tax></LineItem>"
    )
    body = sale(
        lines + cash("1620", type_code="Refund"),
        totals=total("TransactionTaxAmount", "120") + total("TransactionGrandAmount", "1620"),
    )
    found = only_sale(parse_poslog(poslog(tx(body))))
    assert {k: found["totals"][k] for k in ("gross_amount", "tax_amount", "net_amount")} == {
        "gross_amount": Decimal("-1500"),
        "tax_amount": Decimal("-120"),
        "net_amount": Decimal("-1620"),
    }


def test_a_negative_tax_adjustment_keeps_its_sign() -> None:
    lines = item("A", "1000", "1000") + item("B", "600", "600")
    lines += "<LineItem><Tax><Amount>128</Amount></Tax></LineItem>"
    lines += "<LineItem><Tax><Amount>-126</Amount></Tax></LineItem>"
    body = sale(lines + cash("1602"), totals=total("TransactionGrandAmount", "1602"))
    found = only_sale(parse_poslog(poslog(tx(body))))
    assert found["totals"]["tax_amount"] == Decimal("2")


# --- discounts and price changes --------------------------------------------------------------


def test_a_replace_price_modifier_gives_the_new_price_not_money_off() -> None:
    modifier = (
        '<RetailPriceModifier><Amount Action="Replace">0.50</Amount>'
        "<PreviousPrice>0.60</PreviousPrice></RetailPriceModifier>"
    )
    lines = item("A", "0.60", "1.50", qty="3", more=modifier)
    found = only_sale(parse_poslog(poslog(tx(sale(lines + cash("1.50"))))))
    line = found["lines"][0]
    assert (line["discount_amount"], line["extended_amount"]) == (Decimal("0.30"), Decimal("1.50"))


def test_a_receipt_discount_already_inside_the_lines_is_not_taken_off_again() -> None:
    discount = "<LineItem><Discount><Amount>0.20</Amount></Discount></LineItem>"
    lines = item("A", "1.00", "0.80") + discount
    body = sale(lines + cash("0.80"), totals=total("TransactionGrandAmount", "0.80"))
    found = only_sale(parse_poslog(poslog(tx(body))))
    assert found["totals"]["discount_amount"] == Decimal("0")
    assert found["totals"]["net_amount"] == Decimal("0.80")


def test_a_per_unit_discount_amount_counts_once_per_unit_and_the_receipt_discount_once() -> None:
    lines = (
        "<LineItem><Sale><ItemID>A</ItemID><RegularSalesUnitPrice>49.00</RegularSalesUnitPrice>"
        "<ExtendedAmount>196.00</ExtendedAmount><DiscountAmount>12.50</DiscountAmount>"
        "<Quantity>4</Quantity></Sale></LineItem>"
        "<LineItem><Discount><Amount>6.00</Amount></Discount></LineItem>"
    )
    body = sale(lines + cash("140.00"), totals=total("TransactionGrandAmount", "140.00"))
    found = only_sale(parse_poslog(poslog(tx(body))))
    assert found["lines"][0]["extended_amount"] == Decimal("146.00")
    assert found["totals"]["discount_amount"] == Decimal("6.00")


# --- who the customer is ----------------------------------------------------------------------


def test_the_member_is_the_loyalty_account_not_the_programme_name() -> None:
    loyalty = (
        "<LineItem><LoyaltyAccount><CustomerID>SPORTCLUB</CustomerID>"
        "<LoyaltyAccountID>600123456</LoyaltyAccountID></LoyaltyAccount></LineItem>"
    )
    found = only_sale(parse_poslog(poslog(tx(sale(item("A", "1", "1") + loyalty + cash("1"))))))
    assert found["customer_id"] == "600123456"


def test_a_pre_masked_card_number_keeps_its_visible_last_four() -> None:
    card = (
        '<LineItem><Tender TenderType="CreditDebit"><Amount>1.00</Amount><CreditDebit>'
        "<PrimaryAccountNumber>999999XXXXXX9999</PrimaryAccountNumber></CreditDebit>"
        "</Tender></LineItem>"
    )
    result = parse_poslog(poslog(tx(sale(item("A", "1", "1") + card))))
    [payment] = events(result, "payment")
    assert payment["card"]["last_four"] == "9999"


# --- till operations by their meaning --------------------------------------------------------


def control(inner: str, *, sequence: str = "1", when: str = "10:00", kind: str = "") -> str:
    header = f"<TransactionType>{kind}</TransactionType>" if kind else ""
    return tx(inner, sequence=sequence, header=header).replace("T10:00:00", f"T{when}:00")


def tender_control(inner: str) -> str:
    return f"<TenderControlTransaction>{inner}</TenderControlTransaction>"


def till(result: PoslogResult) -> list[tuple[str, dict[str, Decimal], str | None]]:
    return [
        (e["kind"], {a["tender"]: a["amount"] for a in e["tenders"]}, e["reason"])
        for e in events(result, "till_event")
    ]


def test_till_operations_are_read_by_their_meaning() -> None:
    float_ = tender_control(
        "<TillSettle><TenderSummary><Beginning TenderType='Cash'>"
        "<Amount>200000</Amount></Beginning></TenderSummary></TillSettle>"
    )
    loan = tender_control(
        "<TenderLoan><TenderControlTransactionTenderLineItem>"
        "<TenderTypeCode>Cash</TenderTypeCode><Amount>100.00</Amount>"
        "</TenderControlTransactionTenderLineItem></TenderLoan>"
    )
    pay_in = tender_control("<PayIn><TenderAmount>100.00</TenderAmount></PayIn>")
    pay_out = tender_control("<PayOut><TenderAmount>1.00</TenderAmount></PayOut>")
    no_sale = (
        "<ControlTransaction><NoSale><NoSaleReasonCode>03</NoSaleReasonCode></NoSale>"
        "</ControlTransaction>"
    )
    auto = "<ControlTransaction><AutoSignoff/></ControlTransaction>"
    document = poslog(*(control(b, sequence=str(n)) for n, b in enumerate(
        (float_, loan, pay_in, pay_out, no_sale, auto), 1)))  # fmt: skip
    assert till(parse_poslog(document)) == [
        ("OPENING_FLOAT", {"CASH": Decimal("200000")}, None),
        ("LOAN", {"CASH": Decimal("100.00")}, None),
        ("PAID_IN", {"CASH": Decimal("100.00")}, None),
        ("PAID_OUT", {"CASH": Decimal("1.00")}, None),
        ("NO_SALE", {}, "03"),
        ("SIGN_OFF", {}, None),
    ]


def test_one_sequence_number_for_several_operations_gives_each_its_own_id() -> None:
    def settle(summary: str) -> str:
        return tender_control(f"<TillSettle><TenderSummary>{summary}</TenderSummary></TillSettle>")

    amount = "<Amount>500</Amount>"
    operations = [
        control(settle(f"<Beginning>{amount}</Beginning>"), when="07:00", kind="SOD"),
        control(tender_control("<TenderLoan><Amount>300</Amount></TenderLoan>"), when="09:00"),
        control(tender_control("<TenderPickup><Amount>800</Amount></TenderPickup>"), when="13:00"),
        control(settle(f"<Ending>{amount}</Ending>"), when="21:00", kind="EOD"),
    ]
    result = parse_poslog(poslog(*operations))
    kinds = [e["kind"] for e in events(result, "till_event")]
    assert kinds == ["OPENING_FLOAT", "LOAN", "PICKUP", "TILL_CLOSE"]
    ids = [e["event_id"] for e in events(result, "till_event")]
    assert len(set(ids)) == 4
