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

import re
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element

from tillstream.core.rules import LINE_SIGNS
from tillstream_edge import poslog_control  # a module: it reads headers with this one's functions
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

NAMESPACE = uuid.UUID("bfc62966-5d5c-47f7-a9c7-5d29547c6ec3")
"""uuid5 namespace of POSLog event ids; never change it, or resent files get new ids."""

_ZERO = Decimal("0.0000")
# The ARTS totals a sale needs; vendor totals (acs:GrossPositive, fu:..., text values) are
# never read, so one a vendor fills with text cannot refuse a document.
_TOTALS = ("TransactionGrossAmount", "TransactionTaxAmount", "TransactionGrandAmount")
# Where a sale's time is read, in order of preference (see _moment).
_TIMES = ("EndDateTime", "BeginDateTime", "ReceiptDateTime", "POSLogDateTime")


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
            control = poslog_control.convert_control(tx, default_currency, default_timezone)
            if control is not None:  # sign-on, pickup, declaration...: till events
                events += control.events
                masked += control.masked_pans
                continue
            skip = skipped(tx, index)
            if skip is not None:
                skips.append(skip)
                continue
            ctx = ParseContext(_currency(tx, default_currency))
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
    store = _store(tx)
    workstation = child_text(tx, "WorkstationID")
    if workstation is None:
        raise PoslogError("no WorkstationID")
    sequence = child_text(tx, "SequenceNumber")
    if sequence is None:
        raise PoslogError("no SequenceNumber")
    occurred_at, offset = _moment(tx, retail, tz)
    business_day = _business_day(tx, occurred_at, offset)
    items = read_items(retail, ctx)
    if not items.lines:
        raise PoslogError("RetailTransaction has no Sale or Return line items")
    for number, line in enumerate(items.lines, 1):
        line.record["line_number"] = number
    _apply_change(items)

    key = f"{store}|{workstation}|{sequence}|{business_day.isoformat()}"
    sale_id = uuid.uuid5(NAMESPACE, key)
    store_id = ctx.clean(store) or store
    terminal_id = ctx.clean(workstation) or workstation
    receipt = child_text(tx, "ReceiptNumber") or child_text(retail, "ReceiptNumber") or sequence
    sale = {
        "event_id": str(sale_id),
        "store_id": store_id,
        "terminal_id": terminal_id,
        "receipt_number": ctx.clean(receipt),
        "business_day": business_day,
        "occurred_at": occurred_at,
        "utc_offset_minutes": offset,
        "cashier_id": ctx.clean(child_text(tx, "OperatorID") or child_text(retail, "OperatorID")),
        "customer_id": ctx.clean(_customer(tx)),
        "currency": ctx.currency,
        "lines": [line.record for line in items.lines],
        "totals": _totals(retail, items, ctx),
    }
    events: list[tuple[str, dict[str, Any]]] = [("sale", sale)]
    for n, tender in enumerate(items.tenders, 1):
        at = _parse_time(text(tender.at), tz)[0] if text(tender.at) else occurred_at
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


def _store(tx: Element) -> str:
    units = [u for bu in children(tx, "BusinessUnit") for u in children(bu, "UnitID")]
    # V6 files may list several business units (store, country); the store is the one typed
    # RetailStore, or the only/first one.
    for unit in units:
        if attr(unit, "TypeCode") in (None, "RetailStore") and text(unit):
            return text(unit) or ""
    store = (text(units[0]) if units else None) or child_text(tx, "RetailStoreID")
    if store is None:
        raise PoslogError("no store id (BusinessUnit/UnitID or RetailStoreID)")
    return store


def _currency(tx: Element, default: str) -> str:
    """Transaction currency: CurrencyCode, else the first amount attribute, else the store's."""
    code = child_text(tx, "CurrencyCode")
    retail = body(tx)
    if code is None and retail is not None:
        code = child_text(retail, "CurrencyCode")
        for element in retail.iter():
            if code is not None:
                break
            found = attr(element, "Currency") or attr(element, "CurrencyCode")
            if found and found.upper() != "XXX":
                code = found
    code = (code or default).upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise PoslogError(f"currency {code!r} is not an ISO 4217 code")
    return code


def _parse_time(value: str | None, tz: tzinfo) -> tuple[datetime, int]:
    """(UTC instant, local UTC offset in minutes). Zone-less times are local to ``tz``; UTC
    times ("Z") get ``tz``'s offset, since the till's own offset is unknown then."""
    if value is None:
        raise PoslogError("no time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise PoslogError(f"{value!r} is not an ISO 8601 date-time") from exc
    try:
        if parsed.tzinfo is None:
            local_time = parsed.replace(tzinfo=tz)
        elif parsed.utcoffset() == UTC.utcoffset(None):
            local_time = parsed.astimezone(tz)
        else:
            local_time = parsed
        offset = local_time.utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset is not None else 0
        return local_time.astimezone(UTC), minutes
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise PoslogError(f"{value!r} is out of the supported date range") from None


def _moment(tx: Element, retail: Element, tz: tzinfo) -> tuple[datetime, int]:
    """When the sale happened: its end (the latest EndDateTime; V6 may type several), else
    its begin, else the receipt's time, else when the till logged it (POSLogDateTime: all an
    online order may carry). A BusinessDayDate alone is no time of day: refused, not guessed."""
    for name in _TIMES:
        values = [text(e) for holder in (tx, retail) for e in children(holder, name)]
        moments = [_parse_time(v, tz) for v in values if v]
        if moments:
            return max(moments)
    raise PoslogError(f"no time: none of {', '.join(_TIMES)} (BusinessDayDate has no time)")


def _business_day(tx: Element, occurred_at: datetime, offset: int) -> date:
    value = child_text(tx, "BusinessDayDate")
    if value is None:  # fall back to the local calendar date of the sale
        return (occurred_at + timedelta(minutes=offset)).date()
    try:
        return date.fromisoformat(value[:10])
    except ValueError as exc:
        raise PoslogError(f"BusinessDayDate {value!r} is not a date") from exc


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
