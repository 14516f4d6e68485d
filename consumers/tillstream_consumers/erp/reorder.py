"""Reorder points and suggestions.

A SKU's reorder point is the item master's (basis ``STATIC``) when set. Otherwise it follows
sales velocity (basis ``VELOCITY``): units sold in the store over the last
``erp_velocity_days`` days (up to and including the triggering event's day), divided by that
many days, times (lead time + ``erp_safety_days``), rounded up to a thousandth. The lead time
is the item's, or ``erp_default_lead_time_days``. No static point and nothing sold in the
window: no reorder point.

When stock on hand falls to or below the point, one suggestion is published, for
``suggested_quantity = max(0, 2 x point - on_hand)`` (enough to bring stock back to twice the
point); no other until stock rises above the point again.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from tillstream.core.settings import Settings
from tillstream_consumers.runtime.api import QTY_SCALE, from_units
from tillstream_consumers.runtime.db import Database, chunks, marks

Key = tuple[str, str]
"""(store id, sku)"""


@dataclass(frozen=True, slots=True)
class ItemPolicy:
    reorder_point: int | None
    lead_time_days: int | None


@dataclass(frozen=True, slots=True)
class ReorderPoint:
    units: int
    basis: str
    lead_time_days: int


def load_items(db: Database, skus: Iterable[str]) -> dict[str, ItemPolicy]:
    """The item master's reorder settings of ``skus`` (absent SKUs are not in the master)."""
    found: dict[str, ItemPolicy] = {}
    for chunk in chunks(sorted(set(skus))):
        for sku, point, lead in db.fetchall(
            "SELECT sku, reorder_point, lead_time_days FROM erp_items "
            f"WHERE sku IN ({marks(chunk)})",
            chunk,
        ):
            found[sku] = ItemPolicy(
                None if point is None else int(point), None if lead is None else int(lead)
            )
    return found


class SalesHistory:
    """Units sold per (store, sku, day) in the velocity window: the stored daily aggregate
    plus what the batch being applied adds (``add``), which ``pending`` returns for writing."""

    def __init__(self, db: Database, keys: Iterable[Key], since: date) -> None:
        self.days: dict[Key, dict[date, int]] = defaultdict(dict)
        self.pending: dict[tuple[str, str, date], int] = defaultdict(int)
        by_store: dict[str, set[str]] = defaultdict(set)
        for store, sku in keys:
            by_store[store].add(sku)
        for store, skus in sorted(by_store.items()):
            for chunk in chunks(sorted(skus)):
                rows = db.fetchall(
                    "SELECT sku, sales_day, units FROM erp_daily_sales "
                    f"WHERE store_id = ? AND sku IN ({marks(chunk)}) AND sales_day >= ?",
                    (store, *chunk, since.isoformat()),
                )
                for sku, day, units in rows:
                    self.days[(store, sku)][date.fromisoformat(day)] = int(units)

    def add(self, store: str, sku: str, day: date, units: int) -> None:
        days = self.days[(store, sku)]
        days[day] = days.get(day, 0) + units
        self.pending[(store, sku, day)] += units

    def sold(self, key: Key, first: date, last: date) -> int:
        """Units sold from ``first`` to ``last`` (inclusive)."""
        return sum(u for d, u in self.days.get(key, {}).items() if first <= d <= last)


class ReorderPolicy:
    """Decides a SKU's reorder point in a store, as of a day."""

    def __init__(
        self, settings: Settings, items: dict[str, ItemPolicy], sales: SalesHistory
    ) -> None:
        self.settings = settings
        self.items = items
        self.sales = sales

    def point(self, key: Key, day: date) -> ReorderPoint | None:
        item = self.items.get(key[1])
        lead = self.settings.erp_default_lead_time_days
        if item is not None and item.lead_time_days is not None:
            lead = item.lead_time_days
        if item is not None and item.reorder_point is not None:
            return ReorderPoint(item.reorder_point, "STATIC", lead)
        window = self.settings.erp_velocity_days
        sold = self.sales.sold(key, day - timedelta(days=window - 1), day)
        if sold <= 0:
            return None
        cover = lead + self.settings.erp_safety_days
        return ReorderPoint(-(-sold * cover // window), "VELOCITY", lead)


def needs_history(items: dict[str, ItemPolicy], sku: str) -> bool:
    item = items.get(sku)
    return item is None or item.reorder_point is None


def suggestion(
    key: Key, on_hand: int, point: ReorderPoint, trigger_event_id: str, occurred_at: datetime
) -> dict[str, Any]:
    """A ``reorder_suggestion`` record."""
    return {
        "event_id": str(uuid.uuid4()),
        "store_id": key[0],
        "sku": key[1],
        "on_hand": from_units(on_hand, QTY_SCALE),
        "reorder_point": from_units(point.units, QTY_SCALE),
        "suggested_quantity": from_units(max(0, 2 * point.units - on_hand), QTY_SCALE),
        "basis": point.basis,
        "lead_time_days": point.lead_time_days,
        "trigger_event_id": trigger_event_id,
        "occurred_at": occurred_at,
    }
