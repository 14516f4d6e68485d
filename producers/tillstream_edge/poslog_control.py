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

import uuid
from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element

from tillstream.core.till_events import MAY_HAVE_AMOUNTS
from tillstream_edge.poslog_header import NAMESPACE, currency_of, read_header
from tillstream_edge.poslog_items import ParseContext
from tillstream_edge.poslog_tenders import method_of as tender_method  # one tender mapping for all
from tillstream_edge.poslog_xml import PoslogError, attr, child, child_text, flag, local

KINDS: dict[str, dict[str, str]] = {
    "ControlTransaction": {
        "OperatorSignOn": "SIGN_ON",
        "SignOn": "SIGN_ON",
        "OperatorSignOff": "SIGN_OFF",
        "SignOff": "SIGN_OFF",
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
        "TillSettle": "TILL_CLOSE",
        "OpeningFloat": "OPENING_FLOAT",
        "StartingFloat": "OPENING_FLOAT",
        "TillFloat": "OPENING_FLOAT",
        "TenderPickup": "PICKUP",
        "TenderLoan": "LOAN",
        "PaidIn": "PAID_IN",
        "PaidOut": "PAID_OUT",
        "TenderDeclaration": "TENDER_DECLARATION",
    },
}
"""Control body -> {child element's local name: till event kind}."""

# Where the amounts of a kind are: a settlement's TenderSummary/Ending (what the till
# expected at close; its Sales, Loan... siblings are the till's own sums of other events),
# else one Tender per tender type, else the element's own Amount.
_SETTLEMENT_AMOUNTS = ("Ending",)
_AMOUNTS = ("Tender", "Ending")


@dataclass(frozen=True)
class ControlResult:
    events: list[tuple[str, dict[str, Any]]]
    """``("till_event", record)``, one per act in the transaction, in document order."""
    masked_pans: int


def convert_control(tx: Element, default_currency: str, tz: tzinfo) -> ControlResult | None:
    """The till events of a control transaction, or None when ``tx`` holds none (a sale, a
    training or cancelled transaction, a control act tillstream does not keep)."""
    if flag(tx, "TrainingModeFlag") or flag(tx, "CancelFlag"):
        return None
    acts = [
        (element, KINDS[local(body.tag)][local(element.tag)])
        for body in tx
        if local(body.tag) in KINDS
        for element in body
        if local(element.tag) in KINDS[local(body.tag)]
    ]
    if not acts:
        return None
    body = next(b for b in tx if local(b.tag) in KINDS)
    ctx = ParseContext(currency_of(tx, default_currency))
    header = read_header(tx, body, tz)
    operator = child_text(tx, "OperatorID") or child_text(body, "OperatorID")
    events = []
    for n, (element, kind) in enumerate(acts, 1):
        # A sign-on or no-sale has no money: vendor amounts there (totals so far) are not read.
        tenders = _amounts(element, kind, ctx) if kind in MAY_HAVE_AMOUNTS else []
        reason = child_text(element, "ReasonCode", "Reason") or child_text(body, "ReasonCode")
        record = {
            "event_id": str(uuid.uuid5(NAMESPACE, f"{header.key}|control|{n}")),
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


def _amounts(element: Element, kind: str, ctx: ParseContext) -> list[dict[str, Any]]:
    """Amount per tender type (summed: two cash bags are one cash pickup), positive."""
    names = _SETTLEMENT_AMOUNTS if kind == "TILL_CLOSE" else _AMOUNTS
    holders = [e for e in element.iter() if e is not element and local(e.tag) in names]
    if not holders and child(element, "Amount") is not None:
        holders = [element]
    totals: dict[str, Decimal] = {}
    for holder in holders:
        what = f"{local(element.tag)}/{local(holder.tag)}/Amount"
        amount = ctx.amount(child(holder, "Amount"), what)
        if amount is None:
            raise PoslogError(f"{local(element.tag)}: {local(holder.tag)} has no Amount")
        tender = _tender(holder, element)
        # Vendors sign pickups and paid-outs either way; the kind gives the direction.
        totals[tender] = totals.get(tender, Decimal("0.0000")) + abs(amount)
    return [{"tender": tender, "amount": amount} for tender, amount in totals.items()]


def _tender(holder: Element, element: Element) -> str:
    """The tender type of an amount; cash when nothing says (floats, paid in/out)."""
    for source in (holder, element):
        named = attr(source, "TenderType") or child_text(source, "TenderType")
        if named is not None:
            return tender_method(Element("Tender", {"TenderType": named}))
        if source is holder and (found := tender_method(holder)) != "OTHER":
            return found  # a CreditDebit, GiftCard... detail element
    return "CASH"
