"""The demo's closing summary, in words that say what each figure counts: events or
receipts, stock now or reorder suggestions during the run, the audit's flags and which of
them are the sale/payment reconciliation."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from tillstream.demo.stack import DemoStack
from tillstream.demo.view import Snapshot
from tillstream.simulate.catalog import CATALOG
from tillstream.simulate.driver import Stats

RECONCILIATION = ("payment_mismatch", "payment_without_sale")
"""The audit's flag kinds that reconcile sales with their payments."""


@dataclass(frozen=True)
class Shelves:
    """Stock on hand at head office (the ERP's read API), against the reorder points."""

    pairs: int
    at_reorder_point: int
    below_zero: int
    lowest: tuple[str, str, Decimal] | None
    """(store, SKU, on hand) of the lowest stock."""


def shelves(levels: list[dict[str, Any]]) -> Shelves:
    """What ``GET /v1/stock`` of the ERP says, counted (deposits are not stock: not listed)."""
    points = {item.sku: item.reorder_point for item in CATALOG}
    rows = [(r["store_id"], r["sku"], Decimal(r["on_hand"])) for r in levels]
    low = [r for r in rows if r[1] in points and r[2] <= points[r[1]]]
    return Shelves(
        pairs=len(rows),
        at_reorder_point=len(low),
        below_zero=sum(1 for r in rows if r[2] < 0),
        lowest=min(rows, key=lambda r: r[2]) if rows else None,
    )


def erp_stock(stack: DemoStack) -> Shelves | None:
    """The ERP's stock levels through its read API; None if it does not answer."""
    erp = stack.consumers.get("erp")
    if erp is None:
        return None
    try:
        response = httpx.get(f"{erp.url}/v1/stock", timeout=5)
    except httpx.HTTPError:
        return None
    return shelves(list(response.json())) if response.status_code == 200 else None


def deliveries_line(stats: Stats) -> str:
    """Events and receipts, each named: a refused receipt is its sale and its payments."""
    receipts = sum(stats.refused_receipts.values())
    return (
        f"tills sent {stats.total('sent'):,} events ({stats.poslog_files:,} as POSLog files): "
        f"{stats.total('accepted'):,} accepted, {stats.total('rejected'):,} refused by the "
        f"edges as intended (the events of {receipts:,} receipt{_s(receipts)} with a card "
        f"number typed into a text field: each its sale and its payments), "
        f"{stats.total('failed'):,} undelivered"
    )


def stock_lines(found: Shelves | None, last: Snapshot) -> list[str]:
    """Stock now, then the reorder suggestions made during the run: two different counts."""
    suggested = (
        f"reorder suggestions: {last.low_stock:,.0f} store-SKUs reached their reorder point "
        "at some time in the last 24 hours (the ERP suggested an order)"
    )
    if found is None:
        return ["stock now: the ERP did not answer", suggested]
    lowest = ""
    if found.lowest is not None:
        store, sku, on_hand = found.lowest
        lowest = f" (lowest: {store} {sku} {on_hand})"
    return [
        f"stock now (ERP): {found.pairs:,} store-SKUs, {found.at_reorder_point:,} at or below "
        f"their reorder point, {found.below_zero:,} below zero{lowest}",
        suggested,
    ]


def flags_line(last: Snapshot) -> str:
    """The audit's open flags, and how many of them are the sale/payment reconciliation."""
    total = sum(last.audit_flags.values())
    return (
        f"audit: {total:,.0f} open flag{_s(int(total))} in all; of them sale/payment "
        f"reconciliation ({', '.join(RECONCILIATION)}): {last.flags:,.0f}"
    )


def _s(n: int) -> str:
    return "" if n == 1 else "s"
