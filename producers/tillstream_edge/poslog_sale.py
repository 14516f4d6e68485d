"""A completed POSLog ``RetailTransaction`` → one sale event and one payment per tender.

Where the vendor's meaning is open (is a receipt ``Discount`` already inside the lines? is a
line's ``DiscountAmount`` per unit?), and the dialect does not pin it
(:mod:`tillstream_edge.poslog_dialect`), each reading is tried in turn and the first whose
sale keeps the totals rule (``tillstream.core.rules``) and whose payments pay exactly what it
says is due is the one taken: the document's own totals decide. None that does: the first
reading's problem is the reason the transaction is set aside.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import tzinfo
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element

from tillstream.core import rules
from tillstream_edge.poslog_dialect import Dialect
from tillstream_edge.poslog_header import NAMESPACE, Header, parse_time, read_header
from tillstream_edge.poslog_items import (
    REWARDS,
    Choices,
    Items,
    ParseContext,
    money_off_items,
    read_items,
)
from tillstream_edge.poslog_totals import paid, totals
from tillstream_edge.poslog_xml import PoslogError, child_text, local, mark_read, text

Events = list[tuple[str, dict[str, Any]]]

# Where a customer's own id is, best first: a loyalty member's account id before the
# CustomerID some vendors fill with the programme's name (the same for every member).
_CUSTOMER_IDS = (
    ("LoyaltyAccount", ("LoyaltyAccountID", "AccountID", "LoyaltyCardNumber")),
    ("LoyaltyMembership", ("MembershipID", "LoyaltyID")),  # NCR ACS (acs:)
    ("Customer", ("CustomerID",)),
    ("CustomerAccount", ("CustomerAccountID", "CustomerID")),
    ("LoyaltyAccount", ("CustomerID",)),
)
_PROGRAMME_NAME = ("LoyaltyProgramID", "ProgramID", "LoyaltyProgram", "ProgramName")


def convert_sale(
    tx: Element,
    retail: Element,
    ctx: ParseContext,
    tz: tzinfo,
    context: Element | None,
    dialect: Dialect,
) -> Events:
    """The sale and payment events of a completed retail transaction; :class:`PoslogError`
    naming the rule when no reading of it adds up."""
    header = read_header(tx, retail, tz, context)
    first: tuple[dict[str, Any], Items, list[tuple[str, str]]] | None = None
    for choices in _readings(dialect, retail):
        attempt = ParseContext(ctx.currency)
        items = read_items(retail, attempt, choices)
        if not items.lines:
            raise PoslogError("RetailTransaction has no Sale or Return line items")
        sale = _sale(tx, retail, header, items, attempt, dialect)
        problems = rules.sale_problems(sale)
        net = sale["totals"]["net_amount"]
        if not problems and items.tenders and abs(paid(items.tenders) - net) > _tolerance(sale):
            problems = [("payments", "the tenders do not pay what the totals say is due")]
        if not problems:
            ctx.masked_pans += attempt.masked_pans
            return [("sale", sale), *_payments(tx, sale, header, items, tz)]
        first = first or (sale, items, problems)
    assert first is not None
    field, message = first[2][0]
    raise PoslogError(f"{field} {message}")


def _readings(dialect: Dialect, retail: Element) -> list[Choices]:
    """The readings to try, the dialect's pinned choices kept, the usual reading first (a
    choice about an element the transaction does not have is not tried)."""
    names = {local(e.tag) for e in retail.iter()}

    def options(pinned: bool | None, *needs: str) -> list[bool]:
        if pinned is not None:
            return [pinned]
        return [False, True] if any(n in names for n in needs) else [False]

    combinations = itertools.product(
        _in_lines(dialect.discount_in_lines, money_off_items(retail), "LoyaltyReward" in names),
        options(dialect.line_discount_per_unit, "DiscountAmount", "RetailPriceModifier"),
        options(dialect.recycling_in_lines, "RecyclingAmount"),
    )
    return [Choices(*combination) for combination in combinations]


def _in_lines(pinned: bool | None, count: int, rewards: bool) -> list[frozenset[int]]:
    """Which receipt-level money off may already be in the lines: none (the usual), all,
    then each one alone and all but each one (a store coupon beside a spread discount)."""
    every = frozenset(range(count)) | ({REWARDS} if rewards else frozenset())
    if pinned is not None:
        return [every if pinned else frozenset()]
    readings = [frozenset(), every]
    if len(every) > 1:
        readings += [frozenset({i}) for i in sorted(every)]
        readings += [every - {i} for i in sorted(every)]
    return list(dict.fromkeys(readings))  # in order, once each


def _tolerance(sale: dict[str, Any]) -> Decimal:
    return rules.ROUNDING_PER_LINE * max(len(sale["lines"]), 1)


def _sale(
    tx: Element, retail: Element, header: Header, items: Items, ctx: ParseContext, dialect: Dialect
) -> dict[str, Any]:
    for number, line in enumerate(items.lines, 1):
        line.record["line_number"] = number
    store_id = ctx.clean(header.store) or header.store
    terminal_id = ctx.clean(header.workstation) or header.workstation
    receipt = child_text(tx, "ReceiptNumber") or child_text(retail, "ReceiptNumber")
    return {
        "event_id": str(uuid.uuid5(NAMESPACE, header.key)),
        "store_id": store_id,
        "terminal_id": terminal_id,
        "receipt_number": ctx.clean(receipt or header.sequence),
        "business_day": header.business_day,
        "occurred_at": header.occurred_at,
        "utc_offset_minutes": header.offset,
        "cashier_id": ctx.clean(child_text(tx, "OperatorID") or child_text(retail, "OperatorID")),
        "customer_id": ctx.clean(customer_of(tx, dialect.customer_holders)),
        "currency": ctx.currency,
        "lines": [line.record for line in items.lines],
        "totals": totals(retail, items, ctx),
    }


def _payments(
    tx: Element, sale: dict[str, Any], header: Header, items: Items, tz: tzinfo
) -> Events:
    events: Events = []
    for n, tender in enumerate(items.tenders, 1):
        at = parse_time(text(tender.at), tz)[0] if text(tender.at) else header.occurred_at
        payment = {
            "event_id": str(uuid.uuid5(NAMESPACE, f"{header.key}|tender|{n}")),
            "sale_event_id": sale["event_id"],
            "store_id": sale["store_id"],
            "terminal_id": sale["terminal_id"],
            "occurred_at": at,
            "method": tender.method,
            "status": tender.status,
            "amount": tender.amount,
            "currency": sale["currency"],
            "card": tender.card,
        }
        events.append(("payment", payment))
    return events


def customer_of(tx: Element, holders: tuple[str, ...] = ()) -> str | None:
    """The customer's own id only; names, addresses, birthdays next to it are never read, and
    a value that is the loyalty programme's name (written beside the member's id) is not one.
    ``holders``: the only places the dialect keeps the member's id (empty: every usual one)."""
    order = [h for h in _CUSTOMER_IDS if not holders or h[0] in holders]
    for holder_name, ids in order:
        for holder in tx.iter():
            if local(holder.tag) != holder_name:
                continue
            inside = [e for e in holder.iter() if e is not holder]
            programme = {text(e) for e in inside if local(e.tag) in _PROGRAMME_NAME} - {None}
            for name in ids:  # the id may sit deeper (LoyaltyAccount/LoyaltyProgram/...)
                for found in (e for e in inside if local(e.tag) == name):
                    value = text(found)
                    if value is not None and value not in programme:
                        mark_read(found)
                        return value
    return None
