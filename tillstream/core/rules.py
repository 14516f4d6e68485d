"""What a valid event is: the rules the edge enforces and the consumers rely on.

One place for them, so the edge refuses exactly what a consumer would refuse (and says why
at once, to the till) instead of accepting it and dead-lettering it later. Rules read
Avro-shaped records (``Decimal`` amounts and quantities, aware ``datetime``s), so the edge
checks them before encoding and a consumer after decoding. Each rule returns problems as
``(field, message)`` pairs; messages name the field and the limit, never the value (a value
may be a card number typed in the wrong place).

- Times: every consumer must be able to store ``occurred_at`` and the store-local time
  beside it (:data:`EARLIEST` .. :data:`LATEST`); live channels also keep it within a
  plausibility window around now (:class:`TimeWindow`).
- Line kinds: :data:`LINE_KINDS` says what SALE, RETURN and VOID lines do to money, units
  sold, demand and stock; :func:`is_stock_item` which lines are merchandise at all. The ERP,
  CRM and analytics read them here, so they cannot disagree.
- Quantities: a sale line's quantity is positive (its kind gives the direction); a stock
  COUNT is never negative.
- Totals: ``gross_amount`` is the lines' extended amounts, SALE lines added, RETURN and VOID
  lines (a VOID cancels an earlier SALE line) subtracted; ``net_amount`` is gross less the
  receipt discount, plus the tax when tax is added to prices rather than included in them
  (the record does not say which, so either is accepted); discount and tax are each at most
  the lines' amounts; when every line states its tax, ``tax_amount`` is their tax, signed
  the same way, less at most the receipt discount (a discount lowers the tax on it too).
  Each comparison allows :data:`ROUNDING_PER_LINE` per line for rounding.
- Post-voids (``sale_void``): name another event than themselves, state the voided amount
  as zero or more and in a currency (the currency only with an amount), and do not take the
  voided receipt's own number on its till (:func:`sale_void_problems`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tillstream.core.till_events import till_event_problems

Problem = tuple[str, str]
"""(field path, message)."""

_ZERO = Decimal(0)

# Python's datetime holds years 1-9999; Avro timestamp-micros, PostgreSQL timestamptz and
# DuckDB timestamps reach much further. Two years inside each end leave room for any UTC
# offset (+-14 h: the store-local time exists too) and for the consumers' own date
# arithmetic (the ERP's velocity window looks up to 366 days back, reorder lead and safety
# days up to 730 ahead).
EARLIEST = datetime(3, 1, 1, tzinfo=UTC)
"""The earliest ``occurred_at`` every consumer can store and compute with."""
LATEST = datetime(9997, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
"""The latest ``occurred_at`` every consumer can store and compute with."""


@dataclass(frozen=True, slots=True)
class LineEffect:
    """What a sale line of one kind means: the one definition every consumer reads.

    Each sign multiplies the line's (always positive) quantity or amount. A ``SALE`` sells,
    a ``RETURN`` takes goods back and pays money back, a ``VOID`` cancels an earlier
    ``SALE`` line of the same receipt, so it undoes that line everywhere.
    """

    money: int
    """Sign of the extended and tax amounts in the receipt totals and in revenue."""
    units: int
    """Sign in net units sold (analytics: units, top SKUs)."""
    demand: int
    """Sign in demand, the units sold the ERP's reorder velocity counts: a return is not
    negative demand, a void is (it cancels a sale)."""
    stock: int
    """Sign of the change to stock on hand (for a line with ``stock_item`` true)."""
    lines: int
    """Sign in the receipt's line count: a VOID takes away the line it cancels."""
    is_return: bool = False
    """Goods a customer brought back (the analytics returns rate counts these lines)."""


LINE_KINDS: Mapping[str, LineEffect] = {
    "SALE": LineEffect(money=1, units=1, demand=1, stock=-1, lines=1),
    "RETURN": LineEffect(money=-1, units=-1, demand=0, stock=1, lines=1, is_return=True),
    "VOID": LineEffect(money=-1, units=-1, demand=-1, stock=1, lines=-1),
}
"""The meaning of each sale line kind (schemas/sale ``LineKind``), by name."""

LINE_SIGNS: Mapping[str, int] = {name: kind.money for name, kind in LINE_KINDS.items()}
"""Sign of a sale line's extended and tax amounts in the receipt totals, by kind."""


def sale_revenue(sale: Mapping[str, Any]) -> Decimal:
    """What a sale is worth in revenue and customer spend: its net total, the customer's due.

    Every line kind's money is in it by its sign (the totals rule ties it to the lines), and
    so are lines that are not stock items: a deposit is money the customer paid.
    """
    return Decimal(sale["totals"]["net_amount"])


def is_stock_item(line: Mapping[str, Any]) -> bool:
    """Whether a sale line is merchandise that moves stock and counts as units sold.

    Deposits, fees, gift card sales and coupons are not (``stock_item`` false, sale schema
    v2): their money is revenue like any line's, but no stock moves and no units are sold.
    A line without the field (written before v2) is merchandise.
    """
    return bool(line.get("stock_item", True))


ROUNDING_PER_LINE = Decimal("0.01")
"""Totals may differ from what the lines add up to by this much per line (tills round each
line's tax and discount to the cent)."""

MONEY_PRECISION, MONEY_SCALE = 18, 4
"""Digits and decimal places of every amount (the schemas' ``decimal(18, 4)``)."""
QUANTITY_PRECISION, QUANTITY_SCALE = 15, 3
"""Digits and decimal places of every quantity (the schemas' ``decimal(15, 3)``)."""


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """How far from now a live channel's event may have happened."""

    max_age: timedelta
    max_future: timedelta

    def problem(self, at: datetime, now: datetime) -> str | None:
        if at < now - self.max_age:
            return (
                f"more than {_span(self.max_age)} in the past (the edge's plausibility window, "
                "TILLSTREAM_EDGE_MAX_EVENT_AGE); older events are backfilled with "
                "'tillstream edge import'"
            )
        if at > now + self.max_future:
            return (
                f"more than {_span(self.max_future)} in the future (the edge's plausibility "
                "window, TILLSTREAM_EDGE_MAX_FUTURE); check the till's clock"
            )
        return None


def time_problem(at: datetime) -> str | None:
    """Why ``at`` cannot be stored by every consumer, or None."""
    if at.tzinfo is None or at.utcoffset() is None:
        return "must carry a time zone"
    try:
        outside = not EARLIEST <= at <= LATEST
    except OverflowError:  # pragma: no cover - comparisons of aware datetimes do not overflow
        outside = True
    if outside:
        return (
            f"out of range: must be between {_iso(EARLIEST)} and {_iso(LATEST)} "
            "(what every consumer can store, in UTC and store-local time)"
        )
    return None


def sale_line_quantity_problem(quantity: Decimal) -> str | None:
    """Why a sale line's quantity is invalid, or None (the line's kind gives the direction)."""
    if not quantity.is_finite() or quantity <= 0:
        return "must be positive (the line's kind says whether goods leave or come back)"
    return None


def movement_quantity_problem(quantity_type: str, quantity: Decimal) -> str | None:
    """Why a stock movement's quantity is invalid for its ``quantity_type``, or None."""
    if not quantity.is_finite():
        return "must be a finite decimal"
    if quantity_type == "COUNT" and quantity < 0:
        return "a COUNT sets stock on hand, so it cannot be negative"
    return None


def sale_problems(sale: Mapping[str, Any]) -> list[Problem]:
    """Every rule a sale record breaks: line quantities, then totals against the lines."""
    problems: list[Problem] = []
    lines: Sequence[Mapping[str, Any]] = sale["lines"]
    for i, line in enumerate(lines):
        if (problem := sale_line_quantity_problem(Decimal(line["quantity"]))) is not None:
            problems.append((f"lines[{i}].quantity", problem))
    return problems + totals_problems(sale)


def totals_problems(sale: Mapping[str, Any]) -> list[Problem]:
    """Where a sale's totals disagree with its lines (see the module's rule)."""
    lines: Sequence[Mapping[str, Any]] = sale["lines"]
    totals: Mapping[str, Any] = sale["totals"]
    # One pass over the lines: the audit runs this for every sale it stores.
    gross = goods = line_tax = _ZERO
    every_line_taxed = True
    for ln in lines:
        sign = LINE_SIGNS.get(ln["kind"])
        if sign is None:
            return [("lines", f"kind must be one of {', '.join(LINE_SIGNS)}")]
        amount, tax = Decimal(ln["extended_amount"]), Decimal(ln["tax_amount"])
        gross += sign * amount
        goods += abs(amount)
        line_tax += sign * tax
        every_line_taxed = every_line_taxed and bool(tax)
    tolerance = ROUNDING_PER_LINE * max(len(lines), 1)
    given_gross = Decimal(totals["gross_amount"])
    discount = Decimal(totals["discount_amount"])
    tax = Decimal(totals["tax_amount"])
    net = Decimal(totals["net_amount"])
    problems: list[Problem] = []
    if abs(given_gross - gross) > tolerance:
        problems.append(
            (
                "totals.gross_amount",
                "does not match the lines: it must be the extended amounts of SALE lines less "
                f"those of RETURN and VOID lines, within {tolerance} for rounding",
            )
        )
    # Tax and discount can be no more than the goods they are on; tills that itemise the tax
    # of every line must total it.
    goods += tolerance
    if discount < 0 or discount > goods:
        problems.append(
            (
                "totals.discount_amount",
                "must be between 0 and the sum of the lines' extended amounts",
            )
        )
    if abs(tax) > goods:
        problems.append(
            ("totals.tax_amount", "cannot be more than the sum of the lines' extended amounts")
        )
    elif every_line_taxed and not line_tax - discount - tolerance <= tax <= line_tax + tolerance:
        # A receipt discount lowers the tax too (by at most its own amount): the tax on it
        # comes off the lines' tax.
        problems.append(
            (
                "totals.tax_amount",
                "does not match the lines' tax (SALE lines less RETURN and VOID lines, less "
                f"the tax on a receipt discount), within {tolerance} for rounding",
            )
        )
    due = given_gross - discount
    if abs(net - due) > tolerance and abs(net - (due + tax)) > tolerance:
        problems.append(
            (
                "totals.net_amount",
                "does not match the totals: it must be gross_amount - discount_amount (tax "
                "included in prices) or gross_amount - discount_amount + tax_amount (tax added), "
                f"within {tolerance} for rounding",
            )
        )
    return problems


def sale_void_problems(void: Mapping[str, Any]) -> list[Problem]:
    """Every rule a post-void record breaks (its time is :func:`event_problems`' rule)."""
    problems: list[Problem] = []
    if str(void["voided_event_id"]) == str(void["event_id"]):
        problems.append(
            ("voided_event_id", "names the post-void itself; it must be the voided sale's event_id")
        )
    amount, currency = void.get("voided_amount"), void.get("currency")
    if amount is not None and (not Decimal(amount).is_finite() or Decimal(amount) < 0):
        problems.append(("voided_amount", "must be zero or positive: the voided sale's net amount"))
    if amount is not None and not currency:
        problems.append(("currency", "required when voided_amount is given"))
    if amount is None and currency:
        problems.append(("currency", "only with voided_amount (the currency of that amount)"))
    number, voided = void.get("receipt_number"), void.get("voided_receipt_number")
    same_till = (void.get("voided_terminal_id") or void["terminal_id"]) == void["terminal_id"]
    if number and number == voided and same_till:
        problems.append(
            (
                "receipt_number",
                "is the voided receipt's number on the same till; a post-void takes its own "
                "number (or none)",
            )
        )
    return problems


def event_problems(event_type: str, record: Mapping[str, Any]) -> list[Problem]:
    """Every rule ``record`` (an Avro-shaped event of ``event_type``) breaks."""
    problems: list[Problem] = []
    at = record.get("occurred_at")
    if isinstance(at, datetime) and (problem := time_problem(at)) is not None:
        problems.append(("occurred_at", problem))
    if event_type == "sale":
        problems += sale_problems(record)
    elif event_type == "sale_void":
        problems += sale_void_problems(record)
    elif event_type == "till_event":  # the kinds' own rules live with their vocabulary
        problems += till_event_problems(record)
    elif event_type == "stock_movement":
        quantity = Decimal(record["quantity"])
        problem = movement_quantity_problem(str(record["quantity_type"]), quantity)
        if problem is not None:
            problems.append(("quantity", problem))
    return problems


def _iso(at: datetime) -> str:
    # isoformat pads years to four digits; strftime's %Y does not on every platform.
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _span(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0) and span:
        return f"{span.days} day(s)"
    if span % timedelta(hours=1) == timedelta(0) and span:
        return f"{span // timedelta(hours=1)} hour(s)"
    return f"{int(span.total_seconds())} second(s)"
