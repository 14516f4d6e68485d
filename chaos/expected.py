"""What every stage must hold after a run, worked out from the plan alone.

The rules are the documented ones (docs/erp.md, docs/crm.md, docs/analytics.md), written
here a second time on purpose: a checker that called the consumers' own code would agree
with their bugs. Stock follows event time: each (store, sku) keeps its changes (time and
quantity, in compact arrays) and its counts, and once the plan is read, the changes are
put in the windows between counts (a change at a count's instant before it, counts at one
instant by event id): on hand = last count + the window after it, and a count's ledger row
= counted - (previous count + its window).

A post-voided sale and its payments count nowhere (docs/topics.md, "Post-voids"): each stage
must hold what it would without them. Only the ERP's ledger may show it, either way: the
sale's rows and the post-void's opposite ones (the sale read first), or neither.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any
from uuid import UUID

from chaos.plan import Plan

QTY = Decimal(1000)  # thousandths
MONEY = Decimal(10000)  # ten-thousandths

# A VOID cancels a SALE line of its receipt: it undoes that line in stock, demand, units,
# money and the line count. Lines with stock_item false (deposits) are money only.
ERP_STOCK_SIGN = {"SALE": -1, "RETURN": 1, "VOID": 1}
ERP_SOLD_SIGN = {"SALE": 1, "RETURN": 0, "VOID": -1}
ANALYTICS_SIGN = {"SALE": 1, "RETURN": -1, "VOID": -1}
"""Sign of a line's units and money in analytics."""
ANALYTICS_LINES = {"SALE": 1, "RETURN": 1, "VOID": -1}
"""Sign of a line in analytics' line count."""
TENDER_SIGN = {"CAPTURED": 1, "REFUNDED": -1}


def fingerprint(record: dict[str, Any]) -> bytes:
    """A digest of a record's content that ignores representation: ``1.5`` equals ``1.50``,
    a UUID equals its text, a time equals the same instant in another zone, and a null
    field equals an absent one (an optional field a newer schema version added, such as
    sale v3's ``list_price``, reads back as null from a record sent without it)."""
    text = json.dumps(_canonical(record), sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=12).digest()


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date | UUID):
        return str(value)
    return value


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


@dataclass
class _Timeline:
    """One (store, sku)'s stock movements: changes as (time, quantity), and counts."""

    times: array[int] = field(default_factory=lambda: array("q"))
    quantities: array[int] = field(default_factory=lambda: array("q"))
    counts: list[tuple[int, str, int]] = field(default_factory=list)
    """(time, event id, counted)"""


def _units(value: Decimal, scale: Decimal) -> int:
    return int(value * scale)


def _local_hour(at: datetime, offset_minutes: int) -> str:
    """The store-local hour with its offset, as analytics keys it (docs/analytics.md)."""
    zone = timezone(timedelta(minutes=offset_minutes))
    return at.astimezone(zone).strftime("%Y-%m-%dT%H:00") + _offset(offset_minutes)


def _offset(minutes: int) -> str:
    hours, rest = divmod(abs(minutes), 60)
    return f"{'-' if minutes < 0 else '+'}{hours:02d}:{rest:02d}"


@dataclass
class Expected:
    events: dict[str, dict[str, bytes]] = field(default_factory=lambda: defaultdict(dict))
    """Event type -> event id -> fingerprint: what Kafka must carry, once each."""
    refused: set[str] = field(default_factory=set)
    """Events carrying a card number: they must appear nowhere."""
    # ERP
    ledger: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Event id -> (ledger rows, sum of quantity changes)."""
    on_hand: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    timelines: dict[tuple[str, str], _Timeline] = field(
        default_factory=lambda: defaultdict(_Timeline)
    )
    daily_sold: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    # CRM
    visits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    points: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    spend: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(_pair))
    store_visits: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    # Analytics
    hourly: dict[tuple[str, ...], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0] * 5)
    )
    """(store, business day, local hour, currency) -> [transactions, units, net, lines, return
    lines]."""
    sku_daily: dict[tuple[str, ...], list[int]] = field(default_factory=lambda: defaultdict(_pair))
    """(store, business day, sku, currency) -> [units, amount]."""
    tenders: dict[tuple[str, ...], list[int]] = field(default_factory=lambda: defaultdict(_pair))
    """(store, business day of the payment's sale, method, currency) -> [amount, payments]."""
    unplaced: dict[tuple[str, ...], list[int]] = field(default_factory=lambda: defaultdict(_pair))
    """(store, method, currency) -> [amount, payments] of payments whose sale never came: they
    wait for it and count on no day. (Whether payments add up to their sale is the audit's.)"""
    sale_days: dict[str, str] = field(default_factory=dict)
    """Sale event id -> its business day."""
    # Post-voids
    voids: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Voided sale's event id -> (store, the post-void's event id)."""
    voided_ledger: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Voided sale's event id -> the ledger rows it would have had (rows, sum of changes)."""
    void_totals: dict[tuple[str, str, str], list[int]] = field(
        default_factory=lambda: defaultdict(_pair)
    )
    """(store, business day, till) of the post-void -> [post-voids, amount voided]: the
    audit's figures per till."""
    payments: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    """(sale event id, store, method, currency, signed amount) of money moved."""

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in self.events.values())

    @classmethod
    def of(cls, plan: Plan) -> Expected:
        expected = cls()
        for step in plan.all_steps():
            for kind, record in step.events:
                if step.refused:
                    expected.refused.add(str(record["event_id"]))
                    continue
                expected.events[kind][str(record["event_id"])] = fingerprint(record)
                sale = record["event_id"] if kind == "sale" else record.get("sale_event_id")
                if str(sale) in step.voided:  # as if never rung up (nor paid)
                    if kind == "sale":
                        expected.voided_ledger[str(sale)] = _ledger_of(record)
                    continue
                getattr(expected, f"_{kind}")(record)
        expected._settle_stock()
        expected._place_payments()
        return expected

    def _sale(self, sale: dict[str, Any]) -> None:
        store, currency, at = sale["store_id"], sale["currency"], sale["occurred_at"]
        day = sale["business_day"].isoformat()
        rows = change = 0
        units = lines = returns = 0
        for line in sale["lines"]:
            kind, sku = line["kind"], line["sku"]
            qty = _units(line["quantity"], QTY)
            lines += ANALYTICS_LINES[kind]
            returns += kind == "RETURN"
            if not line.get("stock_item", True):
                continue  # a deposit: in the net total only
            rows += 1
            change += ERP_STOCK_SIGN[kind] * qty
            self._change(store, sku, at, ERP_STOCK_SIGN[kind] * qty)
            if ERP_SOLD_SIGN[kind]:
                self.daily_sold[(store, sku, day)] += ERP_SOLD_SIGN[kind] * qty
            sign = ANALYTICS_SIGN[kind]
            units += sign * qty
            sku_row = self.sku_daily[(store, day, sku, currency)]
            sku_row[0] += sign * qty
            sku_row[1] += sign * _units(line["extended_amount"], MONEY)
        if rows:  # a receipt of deposits only has no ledger rows
            self.ledger[str(sale["event_id"])] = (rows, change)
        net = _units(sale["totals"]["net_amount"], MONEY)
        self.sale_days[str(sale["event_id"])] = day
        hourly = self.hourly[(store, day, _local_hour(at, sale["utc_offset_minutes"]), currency)]
        for i, delta in enumerate((1, units, net, lines, returns)):
            hourly[i] += delta
        customer = sale["customer_id"]
        if customer:
            earned = int(sale["totals"]["net_amount"].to_integral_value(rounding=ROUND_DOWN))
            self.visits[customer] += 1
            self.points[customer] = max(0, self.points[customer] + earned)  # never below zero
            spend = self.spend[(customer, currency)]
            spend[0] += 1
            spend[1] += net
            self.store_visits[(customer, store)] += 1

    def _sale_void(self, void: dict[str, Any]) -> None:
        store = void["store_id"]
        self.voids[str(void["voided_event_id"])] = (store, str(void["event_id"]))
        totals = self.void_totals[(store, void["business_day"].isoformat(), void["terminal_id"])]
        totals[0] += 1
        totals[1] += _units(void["voided_amount"], MONEY)

    def _payment(self, payment: dict[str, Any]) -> None:
        sign = TENDER_SIGN.get(payment["status"], 0)
        if sign:  # placed on its sale's business day once the whole plan is read
            self.payments.append(
                (str(payment["sale_event_id"]), payment["store_id"], payment["method"],
                 payment["currency"], sign * _units(payment["amount"], MONEY))
            )  # fmt: skip

    def _place_payments(self) -> None:
        """Each payment on its sale's business day; one whose sale never came waits."""
        for sale_id, store, method, currency, amount in self.payments:
            day = self.sale_days.get(sale_id)
            row = (
                self.unplaced[(store, method, currency)]
                if day is None
                else self.tenders[(store, day, method, currency)]
            )
            row[0] += amount
            row[1] += 1
        self.payments.clear()

    def _stock_movement(self, movement: dict[str, Any]) -> None:
        qty = _units(movement["quantity"], QTY)
        store, sku, at = movement["store_id"], movement["sku"], movement["occurred_at"]
        if movement["quantity_type"] == "COUNT":  # its ledger row: see _settle_stock
            self.timelines[(store, sku)].counts.append(
                (_micros(at), str(movement["event_id"]), qty)
            )
            return
        self._change(store, sku, at, qty)
        self.ledger[str(movement["event_id"])] = (1, qty)

    def _till_event(self, event: dict[str, Any]) -> None:
        """Read by the sales audit alone: its flags are worked out in ``chaos.audit``."""

    def _change(self, store: str, sku: str, at: datetime, qty: int) -> None:
        timeline = self.timelines[(store, sku)]
        timeline.times.append(_micros(at))
        timeline.quantities.append(qty)

    def _settle_stock(self) -> None:
        """Stock on hand and count adjustments, by event time."""
        for key, timeline in self.timelines.items():
            counts = sorted(timeline.counts)
            instants = [at for at, _, _ in counts]
            windows = [0] * (len(counts) + 1)  # changes before each count, and after the last
            for at, qty in zip(timeline.times, timeline.quantities, strict=True):
                windows[bisect_left(instants, at)] += qty
            stock = 0
            for window, (_, event_id, counted) in zip(windows, counts, strict=False):
                self.ledger[event_id] = (1, counted - (stock + window))
                stock = counted
            self.on_hand[key] = stock + windows[-1]
        self.timelines.clear()


def _pair() -> list[int]:
    return [0, 0]


def _ledger_of(sale: dict[str, Any]) -> tuple[int, int]:
    """(rows, sum of changes) of a sale's ledger rows: its lines of stock items."""
    lines = [ln for ln in sale["lines"] if ln.get("stock_item", True)]
    change = sum(ERP_STOCK_SIGN[ln["kind"]] * _units(ln["quantity"], QTY) for ln in lines)
    return len(lines), change
