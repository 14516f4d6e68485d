"""Writing a simulated receipt as an ARTS POSLog V6 document, as an older till would."""

from __future__ import annotations

from datetime import timedelta, timezone
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from tillstream.simulate.shopper import Transaction

_TENDER_TYPES = {"CASH": "Cash", "CARD": "CreditDebit", "MOBILE": "MobilePayment"}


def _money(value: Decimal, currency: str) -> str:
    return f'Currency="{currency}">{value:.2f}'


def poslog(tx: Transaction) -> bytes:
    """The receipt as a POSLog document."""
    sale = tx.sale
    currency = sale["currency"]
    items: list[str] = []
    lines = sale["lines"]
    for n, line in enumerate(lines):
        if line["kind"] == "VOID":
            continue  # written as the VoidFlag of the line it cancels, as tills log it
        cancelled = n + 1 < len(lines) and lines[n + 1]["kind"] == "VOID"
        void = ' VoidFlag="true"' if cancelled else ""
        element = "Return" if line["kind"] == "RETURN" else "Sale"
        # A deposit is no merchandise: ARTS says so with the item type.
        item_type = "" if line.get("stock_item", True) else ' ItemType="Deposit"'
        gtin = line["gtin"]
        identity = f"<POSIdentity><POSItemID>{gtin}</POSItemID></POSIdentity>" if gtin else ""
        items.append(
            f"<LineItem{void}><SequenceNumber>{line['line_number']}</SequenceNumber>"
            f"<{element}{item_type}><ItemID>{escape(line['sku'])}</ItemID>"
            f"{identity}"
            f"<Description>{escape(line['description'])}</Description>"
            f"<RegularSalesUnitPrice {_money(line['unit_price'], currency)}"
            f"</RegularSalesUnitPrice>"
            f"<ExtendedAmount {_money(line['extended_amount'], currency)}</ExtendedAmount>"
            f'<Quantity UnitOfMeasureCode="{line["unit_of_measure"]}">{line["quantity"]}'
            f"</Quantity></{element}></LineItem>"
        )
    number = len(sale["lines"])
    for event, payment in tx.poslog_events:
        if event != "payment":
            continue
        number += 1
        items.append(_tender(payment, number))
    customer = (
        f"<Customer><CustomerID>{escape(sale['customer_id'])}</CustomerID></Customer>"
        if sale["customer_id"]
        else ""
    )
    # The till's local time with its offset (a UTC time would take the edge's zone).
    zone = timezone(timedelta(minutes=sale["utc_offset_minutes"]))
    at = sale["occurred_at"].astimezone(zone).isoformat().replace("+00:00", "Z")
    sequence = sale["receipt_number"].rsplit("-", 1)[-1]
    total = sale["totals"]["net_amount"]
    document = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/" MajorVersion="6">'
        "<Transaction>"
        f"<BusinessUnit><UnitID>{escape(sale['store_id'])}</UnitID></BusinessUnit>"
        # The till's own id and receipt number, as its JSON events and till events name
        # them, so the audit sees one till and one numbering whichever way a receipt came.
        f"<WorkstationID>{escape(sale['terminal_id'])}</WorkstationID>"
        f"<SequenceNumber>{int(sequence)}</SequenceNumber>"
        f"<ReceiptNumber>{escape(sale['receipt_number'])}</ReceiptNumber>"
        f"<OperatorID>{escape(sale['cashier_id'] or '')}</OperatorID>"
        f'<CurrencyCode>{currency}</CurrencyCode><RetailTransaction TransactionStatus="Finished">'
        + "".join(items)
        + f'<Total TotalType="TransactionGrandAmount" {_money(total, currency)}</Total>'
        + customer
        + "</RetailTransaction>"
        f"<BusinessDayDate>{sale['business_day'].isoformat()}</BusinessDayDate>"
        f"<BeginDateTime>{at}</BeginDateTime><EndDateTime>{at}</EndDateTime>"
        "</Transaction></POSLog>"
    )
    return document.encode("utf-8")


def _tender(payment: dict[str, Any], number: int) -> str:
    kind = _TENDER_TYPES.get(payment["method"], "GiftCard")
    refund = ' TypeCode="Refund"' if payment["status"] == "REFUNDED" else ' TypeCode="Sale"'
    card = ""
    if payment["card"]:
        c = payment["card"]
        card = (
            f'<CreditDebit CardType="Credit"><CardBrand>{c["brand"]}</CardBrand>'
            f"<PrimaryAccountNumber>XXXXXXXXXXXX{c['last_four']}</PrimaryAccountNumber>"
            f"<Token>{c['token']}</Token></CreditDebit>"
        )
    return (
        f"<LineItem><SequenceNumber>{number}</SequenceNumber>"
        f'<Tender TenderType="{kind}"{refund}>'
        f'<Amount Currency="{payment["currency"]}">{payment["amount"]:.2f}</Amount>{card}'
        "</Tender></LineItem>"
    )
