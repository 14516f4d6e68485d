"""POSLog ``ControlTransaction`` and ``TenderControlTransaction`` → till events.

What a store-day close and a till balance are made of (sign-on/off, no-sale, till open and
settlement, float, pickups, loans, paid in/out, tender declaration), kept as ``till_event``
records (schemas/till_event) instead of only counted. Vendors name the same act
differently, so each child of the control body is matched by local name (:data:`KINDS`);
a control transaction with none of them (a report request, a price lookup) is left to
:mod:`tillstream_edge.poslog` to skip and report.

The transaction header (store, workstation, times, business day, currency) is read by the
sale converter's own functions, so both kinds of transaction agree on it; ids are uuid5 of
the same identity, so a resent file gives the same events.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element

from tillstream.core.till_events import MAY_HAVE_AMOUNTS
from tillstream_edge.poslog_dialect import GENERIC, Dialect
from tillstream_edge.poslog_header import NAMESPACE, currency_of, read_header
from tillstream_edge.poslog_items import ParseContext
from tillstream_edge.poslog_tenders import method_of as tender_method  # one tender mapping for all
from tillstream_edge.poslog_xml import (
    PoslogError,
    attr,
    child,
    child_text,
    flag,
    local,
    mark_read,
)

KINDS: dict[str, dict[str, str]] = {
    "ControlTransaction": {
        "OperatorSignOn": "SIGN_ON",
        "SignOn": "SIGN_ON",
        "OperatorSignOff": "SIGN_OFF",
        "SignOff": "SIGN_OFF",
        "AutoSignoff": "SIGN_OFF",
        "AutoSignOff": "SIGN_OFF",
        "NoSale": "NO_SALE",
        "TillOpen": "TILL_OPEN",
        "OpenTill": "TILL_OPEN",
        "WorkstationOpen": "TILL_OPEN",
        "TillClose": "TILL_CLOSE",
        "CloseTill": "TILL_CLOSE",
        "WorkstationClose": "TILL_CLOSE",
        "StoreOpen": "STORE_DAY_OPEN",
        "BusinessDayStart": "STORE_DAY_OPEN",
        "StartOfDay": "STORE_DAY_OPEN",
        "StoreClose": "STORE_DAY_CLOSE",
        "BusinessDayEnd": "STORE_DAY_CLOSE",
        "EndOfDay": "STORE_DAY_CLOSE",
    },
    "TenderControlTransaction": {
        "TillSettle": "TILL_CLOSE",  # OPENING_FLOAT when it settles the start of day
        "OpeningFloat": "OPENING_FLOAT",
        "StartingFloat": "OPENING_FLOAT",
        "TillFloat": "OPENING_FLOAT",
        "TenderPickup": "PICKUP",
        "TenderLoan": "LOAN",
        "PaidIn": "PAID_IN",
        "PayIn": "PAID_IN",
        "PaidOut": "PAID_OUT",
        "PayOut": "PAID_OUT",
        "TenderDeclaration": "TENDER_DECLARATION",
    },
}
"""Control body -> {child element's local name: till event kind}."""

# Where the amounts of a kind are: a settlement's TenderSummary/Ending (what the till
# expected at close; its Sales, Loan... siblings are the till's own sums of other events) or
# Beginning (a start-of-day settlement: the float), else one Tender (or 2.2's
# TenderControlTransactionTenderLineItem) per tender type, else the element's own Amount
# (``TenderAmount`` for some vendors' PayIn/PayOut).
_SETTLEMENT_AMOUNTS = {"TILL_CLOSE": ("Ending",), "OPENING_FLOAT": ("Beginning",)}
_AMOUNTS = (
    "Tender",
    "TenderControlTransactionTenderLineItem",
    "Ending",
    "PayIn",
    "PayOut",
    "Totals",  # NCR Retalix
    "TenderTypeCount",  # Oracle Xstore
)
_AMOUNT = ("Amount", "TenderAmount")
_TENDER_TYPE = ("TenderType", "TenderTypeCode")
# What a TillSettle settles, by the TransactionType (or DayPart) written beside it: the start
# of day (the float), or, as NCR RES 3.2 writes them, a paid-in or paid-out; else the close.
_SETTLES = {
    **dict.fromkeys(("sod", "startofday", "beginofday", "open", "opening"), "OPENING_FLOAT"),
    **dict.fromkeys(("payin", "paidin"), "PAID_IN"),
    **dict.fromkeys(("payout", "paidout"), "PAID_OUT"),
}
_ABORTED = re.compile(r"abort", re.IGNORECASE)
_REASONS = ("ReasonCode", "Reason", "NoSaleReasonCode", "PaidInReasonCode", "PaidOutReasonCode")


@dataclass(frozen=True)
class ControlResult:
    events: list[tuple[str, dict[str, Any]]]
    """``("till_event", record)``, one per act in the transaction, in document order."""
    masked_pans: int


def convert_control(
    tx: Element,
    default_currency: str,
    tz: tzinfo,
    context: Element | None = None,
    dialect: Dialect = GENERIC,
) -> ControlResult | None:
    """The till events of a control transaction, or None when ``tx`` holds none (a sale, a
    training or cancelled transaction, a control act tillstream does not keep)."""
    if flag(tx, "TrainingModeFlag") or flag(tx, "CancelFlag"):
        return None
    kinds = {
        name: {**KINDS.get(name, {}), **dialect.control_kinds.get(name, {})}
        for name in {*KINDS, *dialect.control_kinds}
    }
    acts = [
        (element, _kind(tx, element, kinds[local(body.tag)][local(element.tag)]))
        for body in tx
        if local(body.tag) in kinds
        for element in body
        if local(element.tag) in kinds[local(body.tag)]
    ]
    if not acts:
        return None
    body = next(b for b in tx if local(b.tag) in kinds)
    if _ABORTED.search(child_text(body, "ReasonCode") or child_text(tx, "ReasonCode") or ""):
        return None  # NCR: "SignOff/On Aborted": nobody signed on or off
    for element, _ in acts:
        mark_read(element)
    ctx = ParseContext(currency_of(tx, default_currency))
    header = read_header(tx, body, tz, context)
    operator = child_text(tx, "OperatorID") or child_text(body, "OperatorID")
    events = []
    for n, (element, kind) in enumerate(acts, 1):
        # A sign-on or no-sale has no money: vendor amounts there (totals so far) are not read.
        tenders = _amounts(element, kind, ctx, dialect) if kind in MAY_HAVE_AMOUNTS else []
        reason = child_text(element, *_REASONS) or child_text(body, *_REASONS)
        # The kind and time are in the id: some tills number the start of day, the loan, the
        # pickups and the end of day of a till with one sequence number.
        at = header.occurred_at.isoformat()
        record = {
            "event_id": str(uuid.uuid5(NAMESPACE, f"{header.key}|control|{kind}|{at}|{n}")),
            "store_id": ctx.clean(header.store) or header.store,
            "terminal_id": ctx.clean(header.workstation) or header.workstation,
            "kind": kind,
            "sequence_number": ctx.clean(header.sequence),
            "operator_id": ctx.clean(child_text(element, "OperatorID") or operator),
            "business_day": header.business_day,
            "occurred_at": header.occurred_at,
            "utc_offset_minutes": header.offset,
            "currency": ctx.currency if tenders else None,
            "tenders": tenders,
            "reason": ctx.clean(reason),
            "source": "poslog",
        }
        events.append(("till_event", record))
    return ControlResult(events, ctx.masked_pans)


def _kind(tx: Element, element: Element, kind: str) -> str:
    """A TillSettle settles the start of day (the float) when its summary holds only a
    ``Beginning``; its transaction type (or day part) may say what it settles; else it
    closes the till."""
    if local(element.tag) != "TillSettle":
        return kind
    body = next((b for b in tx if local(b.tag) in KINDS), tx)
    types = [child_text(tx, "TransactionType"), attr(tx, "TransactionType")]
    types.append(child_text(body, "DayPart"))
    for written in types:
        settles = _SETTLES.get(re.sub(r"[^a-z]", "", (written or "").lower()))
        if settles is not None:
            return settles
    names = {local(e.tag) for e in element.iter()}
    if "Beginning" in names and "Ending" not in names:
        return "OPENING_FLOAT"
    return kind


def _amounts(
    element: Element, kind: str, ctx: ParseContext, dialect: Dialect
) -> list[dict[str, Any]]:
    """Amount per tender type (summed: two cash bags are one cash pickup), positive."""
    names = (
        _SETTLEMENT_AMOUNTS.get(kind, _AMOUNTS) if local(element.tag) == "TillSettle" else _AMOUNTS
    )
    holders = _outermost(element, names)
    if not holders and names != _AMOUNTS and kind != "TILL_CLOSE":
        holders = _outermost(element, _AMOUNTS)  # a float settled as plain tender amounts
    if not holders and child(element, *_AMOUNT) is not None:
        holders = [element]
    totals: dict[str, Decimal] = {}
    for holder in holders:
        mark_read(holder)
        what = f"{local(element.tag)}/{local(holder.tag)}/Amount"
        amount_el = child(holder, *_AMOUNT)
        if amount_el is None:  # Xstore: TenderTypeCount/TenderTypeTotal/Amount
            totals_el = next((c for c in holder if local(c.tag).endswith("Total")), None)
            amount_el = child(totals_el, *_AMOUNT) if totals_el is not None else None
        amount = ctx.amount(amount_el, what)
        if amount is None:
            raise PoslogError(f"{local(element.tag)}: {local(holder.tag)} has no Amount")
        tender = _tender(holder, element, dialect)
        # Vendors sign pickups and paid-outs either way; the kind gives the direction.
        totals[tender] = totals.get(tender, Decimal("0.0000")) + abs(amount)
    return [{"tender": tender, "amount": amount} for tender, amount in totals.items()]


def _outermost(element: Element, names: tuple[str, ...]) -> list[Element]:
    """Amount holders below ``element``, not those inside another (one amount, counted once)."""
    found: list[Element] = []

    def visit(parent: Element) -> None:
        for child_el in parent:
            if local(child_el.tag) in names:
                found.append(child_el)
            else:
                visit(child_el)

    visit(element)
    return found


def _tender(holder: Element, element: Element, dialect: Dialect) -> str:
    """The tender type of an amount; cash when nothing says (floats, paid in/out), unless the
    dialect knows the act's type code (a card terminal's reconciliation)."""
    known = dialect.pickup_tenders.get(
        re.sub(r"[^a-z]", "", (attr(element, "TypeCode") or "").lower())
    )
    if known is not None:
        return known
    for source in (holder, element):
        named = attr(source, "TenderType") or child_text(source, *_TENDER_TYPE)
        if named is not None:
            return tender_method(Element("Tender", {"TenderType": named}))
        if source is holder and (found := tender_method(holder)) != "OTHER":
            return found  # a CreditDebit, GiftCard... detail element
    return "CASH"
