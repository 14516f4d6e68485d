"""ARTS POSLog XML → sale and payment events.

One document holds one or many ``Transaction``s (root ``POSLog`` or a bare ``Transaction``).
Each completed ``RetailTransaction`` becomes one sale event plus one payment event per
tender; control and tender control transactions become till events
(:mod:`tillstream_edge.poslog_control`); every other transaction (suspended, training, a control
operation that is no till event, ...) is listed with its kind and the reason it was skipped
(:mod:`tillstream_edge.poslog_kinds`).
Conversion is atomic per document: one bad transaction fails the whole file, so a file is
either sent completely or fixed and resent, and resending yields the same event ids. A
document with no sale in it is refused too (:class:`NothingConverted`), each transaction named.

Vendors differ (V6 ``BusinessUnit/UnitID`` vs 2.x ``RetailStoreID``, ``fu:``/``acs:``
extensions, element order), so elements are matched by local name wherever they are. Only
ids leave: customer names/addresses and operator names are never read; card numbers are
reduced to brand and last four digits, and any kept free text has card numbers masked.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, tzinfo
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element

from tillstream.core.rules import LINE_SIGNS
from tillstream_edge.poslog_control import convert_control
from tillstream_edge.poslog_header import NAMESPACE, currency_of, parse_time, read_header
from tillstream_edge.poslog_items import Items, ParseContext, read_items
from tillstream_edge.poslog_kinds import NothingConverted, Skipped, body, skipped
from tillstream_edge.poslog_xml import (
    PoslogError,
    attr,
    child_text,
    children,
    is_true,
    local,
    parse_xml,
    text,
)

__all__ = [
    "NAMESPACE",
    "NothingConverted",
    "PoslogError",
    "PoslogResult",
    "Skipped",
    "parse_poslog",
]

_ZERO = Decimal("0.0000")
# The ARTS totals a sale needs; vendor totals (acs:GrossPositive, fu:..., text values) are
# never read, so one a vendor fills with text cannot refuse a document.
_TOTALS = ("TransactionGrossAmount", "TransactionTaxAmount", "TransactionGrandAmount")


@dataclass(frozen=True)
class PoslogResult:
    events: list[tuple[str, dict[str, Any]]]
    """``("sale", record)``, ``("payment", record)`` and ``("till_event", record)``, in
    document order."""
    skipped: list[Skipped]
    """Transactions not converted, in document order, each with its kind and reason."""
    masked_pans: int
    """Card numbers masked (full PANs in tenders or in free text that was kept)."""

    @property
    def skipped_kinds(self) -> dict[str, int]:
        """How many transactions were skipped, by kind, e.g. ``{"SignOn": 1}``."""
        return dict(Counter(s.kind for s in self.skipped))


def parse_poslog(
    data: bytes,
    *,
    default_currency: str = "EUR",
    default_timezone: tzinfo = UTC,
    max_bytes: int = 20 * 1024 * 1024,
) -> PoslogResult:
    """Convert a POSLog document; raises :class:`PoslogError` if any part cannot be, and
    :class:`NothingConverted` if no transaction of it is a sale.

    ``default_currency`` is the store's: the currency of transactions that name none."""
    root = parse_xml(data, max_bytes=max_bytes)
    root_name = local(root.tag)
    if root_name == "Transaction":
        transactions = [root]
    elif root_name == "POSLog":
        transactions = list(children(root, "Transaction"))
    else:
        raise PoslogError(f"root element <{root_name}> is neither POSLog nor Transaction")
    events: list[tuple[str, dict[str, Any]]] = []
    skips: list[Skipped] = []
    masked = 0
    for index, tx in enumerate(transactions, 1):
        sequence = child_text(tx, "SequenceNumber")
        label = f"{sequence} (#{index})" if sequence else f"#{index} (no SequenceNumber)"
        try:
            control = convert_control(tx, default_currency, default_timezone)
            if control is not None:  # sign-on, pickup, declaration...: till events
                events += control.events
                masked += control.masked_pans
                continue
            skip = skipped(tx, index)
            if skip is not None:
                skips.append(skip)
                continue
            ctx = ParseContext(currency_of(tx, default_currency))
            events += _convert(tx, ctx, default_timezone)
        except PoslogError as exc:
            raise PoslogError(f"transaction {label}: {exc}") from exc
        masked += ctx.masked_pans
    if not events:
        raise NothingConverted(skips)
    return PoslogResult(events, skips, masked)


def _convert(tx: Element, ctx: ParseContext, tz: tzinfo) -> list[tuple[str, dict[str, Any]]]:
    retail = body(tx)
    assert retail is not None  # not skipped, so there is a RetailTransaction
    header = read_header(tx, retail, tz)
    occurred_at, sequence = header.occurred_at, header.sequence
    items = read_items(retail, ctx)
    if not items.lines:
        raise PoslogError("RetailTransaction has no Sale or Return line items")
    for number, line in enumerate(items.lines, 1):
        line.record["line_number"] = number
    _apply_change(items)

    key = header.key
    sale_id = uuid.uuid5(NAMESPACE, key)
    store_id = ctx.clean(header.store) or header.store
    terminal_id = ctx.clean(header.workstation) or header.workstation
    receipt = child_text(tx, "ReceiptNumber") or child_text(retail, "ReceiptNumber") or sequence
    sale = {
        "event_id": str(sale_id),
        "store_id": store_id,
        "terminal_id": terminal_id,
        "receipt_number": ctx.clean(receipt),
        "business_day": header.business_day,
        "occurred_at": occurred_at,
        "utc_offset_minutes": header.offset,
        "cashier_id": ctx.clean(child_text(tx, "OperatorID") or child_text(retail, "OperatorID")),
        "customer_id": ctx.clean(_customer(tx)),
        "currency": ctx.currency,
        "lines": [line.record for line in items.lines],
        "totals": _totals(retail, items, ctx),
    }
    events: list[tuple[str, dict[str, Any]]] = [("sale", sale)]
    for n, tender in enumerate(items.tenders, 1):
        at = parse_time(text(tender.at), tz)[0] if text(tender.at) else occurred_at
        payment = {
            "event_id": str(uuid.uuid5(NAMESPACE, f"{key}|tender|{n}")),
            "sale_event_id": str(sale_id),
            "store_id": store_id,
            "terminal_id": terminal_id,
            "occurred_at": at,
            "method": tender.method,
            "status": tender.status,
            "amount": tender.amount,
            "currency": ctx.currency,
            "card": tender.card,
        }
        events.append(("payment", payment))
    return events


def _customer(tx: Element) -> str | None:
    """The customer's id only; names, addresses, birthdays next to it are never read."""
    for holder, ids in (
        ("Customer", ("CustomerID",)),
        ("LoyaltyAccount", ("LoyaltyAccountID", "CustomerID")),
        ("CustomerAccount", ("CustomerAccountID", "CustomerID")),
    ):
        for element in tx.iter():
            if local(element.tag) == holder:
                found = child_text(element, *ids)
                if found is not None:
                    return found
    return None


def _apply_change(items: Items) -> None:
    """Net change handed back into the tender it was given from, so payments add up to what
    the store kept (a 27.00 cash tender with 0.01 change is a 26.99 cash payment)."""
    for method, amount in items.change:
        if not amount:
            continue
        captured = [t for t in items.tenders if t.status == "CAPTURED"]
        same = [t for t in captured if t.method == method]
        candidates = same or captured
        target = candidates[-1] if candidates else None
        if target is None or target.amount < amount:
            raise PoslogError(f"change of {amount} exceeds the tender it is given from")
        target.amount -= amount


def _totals(retail: Element, items: Items, ctx: ParseContext) -> dict[str, Decimal]:
    """The till's totals where it gives them, else computed from the lines and tenders.

    ARTS ``TransactionNetAmount`` is the amount before tax, so the amount due (our
    ``net_amount``) is ARTS ``TransactionGrandAmount``.
    """
    given: dict[str, Decimal | None] = {}
    for total in children(retail, "Total"):
        kind = attr(total, "TotalType")
        if kind in _TOTALS and kind not in given:
            given[kind] = ctx.amount(total, f"Total {kind}")
    signs = LINE_SIGNS  # the shared totals rule: a VOID line cancels an earlier SALE line
    records = [line.record for line in items.lines]
    gross = given.get("TransactionGrossAmount")
    if gross is None:
        gross = sum((r["extended_amount"] * signs[r["kind"]] for r in records), _ZERO)
    tax = given.get("TransactionTaxAmount")
    if tax is None:
        tax = items.tax_lines
    if tax is None:
        tax = sum((r["tax_amount"] * signs[r["kind"]] for r in records), _ZERO)
    net = given.get("TransactionGrandAmount")
    paid = [t for t in items.tenders if t.status in ("CAPTURED", "REFUNDED")]
    if net is None and paid:
        net = sum((t.amount if t.status == "CAPTURED" else -t.amount for t in paid), _ZERO)
    if net is None:
        net = gross - items.discount + (tax if _tax_added(retail) else _ZERO)
    return {
        "gross_amount": gross,
        "discount_amount": items.discount,
        "tax_amount": tax,
        "net_amount": net,
    }


def _tax_added(retail: Element) -> bool:
    """Whether the till says prices exclude tax (US sales tax); EU-style inclusive otherwise."""
    for element in retail.iter():
        if local(element.tag) == "TaxIncludedInPriceFlag":
            value = text(element)
        else:
            value = attr(element, "TaxIncludedInPriceFlag")
        if value is not None and not is_true(value):
            return True
    return False
