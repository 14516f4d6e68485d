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
- What consumers key on and compute with, that Avro cannot say (:func:`event_problems`): a
  UTC offset a time zone can have (:data:`MAX_UTC_OFFSET_MINUTES`); a business day that is
  the store-local date of ``occurred_at``, give or take a day (:func:`business_day_problem`);
  identifying strings (store, till, receipt number...) neither empty nor longer than
  :data:`IDENTIFIER_MAX_LENGTH`; ISO 4217 currency codes; SKUs by the SKU rule; a sale with
  at least one line, line numbers from 1 and unique, line amounts never negative (the kind
  gives the direction); a payment's amount never negative (its status gives the direction).

The line kinds and the rules of a sale's lines and totals are written in
:mod:`tillstream.core.sale_rules` and named here; a till event's kinds in
:mod:`tillstream.core.till_events`. A consumer's runtime checks every record it reads
against :func:`event_problems` and dead-letters one that breaks a rule
(``tillstream_consumers/runtime/validity.py``), so these rules run per record at both ends:
keep them cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tillstream.core.identifiers import sku_problem
from tillstream.core.sale_rules import (
    LINE_KINDS,
    LINE_SIGNS,
    ROUNDING_PER_LINE,
    LineEffect,
    is_stock_item,
    lines_and_totals_problems,
    sale_line_quantity_problem,
    sale_problems,
    sale_revenue,
    totals_problems,
)
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


def movement_quantity_problem(quantity_type: str, quantity: Decimal) -> str | None:
    """Why a stock movement's quantity is invalid for its ``quantity_type``, or None."""
    if not quantity.is_finite():
        return "must be a finite decimal"
    if quantity_type == "COUNT" and quantity < 0:
        return "a COUNT sets stock on hand, so it cannot be negative"
    return None


# -- what consumers key on and compute with, that Avro cannot say -------------------------

MAX_UTC_OFFSET_MINUTES = 14 * 60
"""The furthest a store's clock is from UTC either way: time zones run from UTC-12:00 to
UTC+14:00, so +-14 h holds every one (and every store-local time a consumer computes)."""
BUSINESS_DAY_SLACK_DAYS = 1
"""How far a business day may be from the store-local date of ``occurred_at``: a night
shift's sale after midnight belongs to the day before, a day opened early to the next."""
IDENTIFIER_MAX_LENGTH = 200
"""The longest identifying string (store, till, receipt or sequence number): what the edge's
HTTP API takes."""

_OFFSET_RANGE = f"between -{MAX_UTC_OFFSET_MINUTES} and {MAX_UTC_OFFSET_MINUTES} minutes"
_MINUTES_A_DAY = 24 * 60
_KEYED_ON: Mapping[str, tuple[str, ...]] = {
    "sale": ("store_id", "terminal_id", "receipt_number"),
    "payment": ("store_id", "terminal_id"),
    "stock_movement": ("store_id",),
    "till_event": ("store_id", "terminal_id"),
    "sale_void": ("store_id", "terminal_id"),
    "reorder_suggestion": ("store_id",),
    "customer_request": ("customer_id",),
}
"""Identifying strings each event type must have (not empty, not too long)."""
_NUMBERS: Mapping[str, tuple[str, ...]] = {
    "till_event": ("sequence_number",),
    "sale_void": ("receipt_number", "voided_terminal_id", "voided_receipt_number"),
}
"""Identifying strings an event type may leave out (null or empty), bounded when given."""
_WITH_SKU = frozenset({"stock_movement", "reorder_suggestion", "item", "price"})
"""Event types with a top-level ``sku`` (a sale's are on its lines)."""


def utc_offset_problem(minutes: int) -> str | None:
    """Why a store-local UTC offset (``utc_offset_minutes``) is one no time zone has, or None."""
    if -MAX_UTC_OFFSET_MINUTES <= minutes <= MAX_UTC_OFFSET_MINUTES:
        return None
    return f"must be {_OFFSET_RANGE} (UTC-14:00 to UTC+14:00, what time zones have)"


def business_day_problem(business_day: date, at: datetime, utc_offset_minutes: int) -> str | None:
    """Why ``business_day`` cannot be the business day of an event at ``at`` in a store
    ``utc_offset_minutes`` from UTC, or None: it is the store-local date of ``at``, or a day
    either side (:data:`BUSINESS_DAY_SLACK_DAYS`). ``at`` is a valid time (:func:`time_problem`)
    and the offset a valid one (:func:`utc_offset_problem`)."""
    utc = at if at.tzinfo is UTC else at.astimezone(UTC)
    # By ordinals: this runs for every record a consumer reads, timedelta arithmetic is slower.
    minutes = utc.hour * 60 + utc.minute + utc_offset_minutes
    local_day = utc.toordinal() + minutes // _MINUTES_A_DAY
    if abs(business_day.toordinal() - local_day) <= BUSINESS_DAY_SLACK_DAYS:
        return None
    return (
        "must be the store-local date of occurred_at (occurred_at + utc_offset_minutes), or "
        f"up to {BUSINESS_DAY_SLACK_DAYS} day before or after it (a shift past midnight)"
    )


def currency_problem(code: str) -> str | None:
    """Why ``code`` is not an ISO 4217 currency code (three capital letters A-Z), or None."""
    if len(code) == 3 and code.isascii() and code.isalpha() and code.isupper():
        return None
    return "must be an ISO 4217 code: three capital letters A-Z (such as EUR)"


def identifier_problem(value: str) -> str | None:
    """Why an identifying string (a store, till, receipt...) cannot key anything, or None."""
    if len(value) > IDENTIFIER_MAX_LENGTH:
        return f"must be at most {IDENTIFIER_MAX_LENGTH} characters"
    if not value.strip():
        return "must not be empty or blank"
    return None


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
    """Every rule ``record`` (an Avro-shaped event of ``event_type``) breaks: the rules of
    every event (time, offset, business day, identifiers, currency), then its type's own."""
    problems = _common_problems(event_type, record)
    if event_type == "sale":
        problems += lines_and_totals_problems(record)
    elif event_type == "payment":
        if _dec(record["amount"]) < _ZERO:
            problems.append(("amount", "must be zero or more (the status gives the direction)"))
    elif event_type == "sale_void":
        problems += sale_void_problems(record)
    elif event_type == "till_event":  # the kinds' own rules live with their vocabulary
        problems += till_event_problems(record)
    elif event_type == "stock_movement":
        quantity = _dec(record["quantity"])
        problem = movement_quantity_problem(str(record["quantity_type"]), quantity)
        if problem is not None:
            problems.append(("quantity", problem))
    return problems


def _common_problems(event_type: str, record: Mapping[str, Any]) -> list[Problem]:
    """The rules of every event that has the field: a time every consumer can hold, a UTC
    offset, a business day that agrees with both, identifying strings, the currency, the SKU."""
    problems: list[Problem] = []
    at = record.get("occurred_at")
    if isinstance(at, datetime) and (problem := time_problem(at)) is not None:
        problems.append(("occurred_at", problem))
        at = None  # no arithmetic on a time out of range
    offset = record.get("utc_offset_minutes")
    if isinstance(offset, int) and (problem := utc_offset_problem(offset)) is not None:
        problems.append(("utc_offset_minutes", problem))
        offset = None
    day = record.get("business_day")
    if (
        isinstance(day, date)
        and isinstance(at, datetime)
        and isinstance(offset, int)
        and (problem := business_day_problem(day, at, offset)) is not None
    ):
        problems.append(("business_day", problem))
    for name in _KEYED_ON.get(event_type, ()):
        value = record.get(name)
        if isinstance(value, str) and (problem := identifier_problem(value)) is not None:
            problems.append((name, problem))
    for name in _NUMBERS.get(event_type, ()):
        value = record.get(name)
        if value and isinstance(value, str) and len(value) > IDENTIFIER_MAX_LENGTH:
            problems.append((name, f"must be at most {IDENTIFIER_MAX_LENGTH} characters"))
    currency = record.get("currency")
    if isinstance(currency, str) and (problem := currency_problem(currency)) is not None:
        problems.append(("currency", problem))
    sku = record.get("sku") if event_type in _WITH_SKU else None
    if isinstance(sku, str) and (found := sku_problem(sku)) is not None:
        problems.append(("sku", found.message))
    return problems


def _dec(value: Any) -> Decimal:
    """``value`` as a Decimal; decoded records hold Decimals already (no copy then)."""
    return value if type(value) is Decimal else Decimal(value)


def _iso(at: datetime) -> str:
    # isoformat pads years to four digits; strftime's %Y does not on every platform.
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _span(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0) and span:
        return f"{span.days} day(s)"
    if span % timedelta(hours=1) == timedelta(0) and span:
        return f"{span // timedelta(hours=1)} hour(s)"
    return f"{int(span.total_seconds())} second(s)"


__all__ = [
    "BUSINESS_DAY_SLACK_DAYS",
    "EARLIEST",
    "IDENTIFIER_MAX_LENGTH",
    "LATEST",
    "LINE_KINDS",
    "LINE_SIGNS",
    "MAX_UTC_OFFSET_MINUTES",
    "MONEY_PRECISION",
    "MONEY_SCALE",
    "QUANTITY_PRECISION",
    "QUANTITY_SCALE",
    "ROUNDING_PER_LINE",
    "LineEffect",
    "Problem",
    "TimeWindow",
    "business_day_problem",
    "currency_problem",
    "event_problems",
    "identifier_problem",
    "is_stock_item",
    "movement_quantity_problem",
    "sale_line_quantity_problem",
    "sale_problems",
    "sale_revenue",
    "sale_void_problems",
    "time_problem",
    "totals_problems",
    "utc_offset_problem",
]
