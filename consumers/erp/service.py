"""The ERP inventory consumer: a stock ledger, stock on hand per store and SKU, and reorder
suggestions (see ``docs/erp.md``).

Each batch costs a few indexed reads for the (store, sku) pairs it touches and a few
``executemany`` writes; nothing it does grows with the size of the ledger.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consumers.erp import queries
from consumers.erp.movements import StockEvent, stock_event
from consumers.erp.reorder import (
    Key,
    ReorderPolicy,
    SalesHistory,
    load_items,
    needs_history,
    suggestion,
)
from consumers.erp.tables import COMPONENT, MIGRATIONS, chunks, marks
from consumers.runtime.api import Consumer, Context, Record
from consumers.runtime.db import Database
from tillstream.topics import REORDER_SUGGESTIONS, SALES, STOCK_MOVEMENTS, store_key


@dataclass(slots=True)
class StockState:
    on_hand: int
    alerted: bool
    """A suggestion was published for the current crossing of the reorder point."""


class ErpInventory(Consumer):
    name = COMPONENT
    topics = (SALES.name, STOCK_MOVEMENTS.name)
    publishes = (REORDER_SUGGESTIONS.name,)
    migrations = MIGRATIONS

    def apply(self, ctx: Context, records: list[Record]) -> None:
        events = [stock_event(r) for r in records]
        if not events:
            return
        keys = {(e.store_id, m.sku) for e in events for m in e.movements}
        stock = load_stock(ctx.db, keys)
        items = load_items(ctx.db, {sku for _, sku in keys})
        since = min(e.day for e in events) - timedelta(days=self.settings.erp_velocity_days - 1)
        history = SalesHistory(ctx.db, {k for k in keys if needs_history(items, k[1])}, since)
        policy = ReorderPolicy(self.settings, items, history)
        ledger: list[tuple[Any, ...]] = []
        for event in events:
            ledger.extend(self._apply_event(ctx, event, stock, history, policy))
        now = ctx.now.isoformat()
        ctx.db.insert_many(
            "erp_ledger",
            (
                "event_id",
                "line_no",
                "store_id",
                "sku",
                "qty_change",
                "kind",
                "reference",
                "occurred_at",
            ),
            ledger,
        )
        ctx.db.insert_many(
            "erp_stock",
            ("store_id", "sku", "on_hand", "alerted", "updated_at"),
            [(s, k, st.on_hand, int(st.alerted), now) for (s, k), st in sorted(stock.items())],
            "ON CONFLICT (store_id, sku) DO UPDATE SET "
            "on_hand = excluded.on_hand, alerted = excluded.alerted, "
            "updated_at = excluded.updated_at",
        )
        ctx.db.insert_many(
            "erp_daily_sales",
            ("store_id", "sku", "sales_day", "units"),
            [(s, k, d.isoformat(), u) for (s, k, d), u in sorted(history.pending.items())],
            "ON CONFLICT (store_id, sku, sales_day) DO UPDATE SET "
            "units = erp_daily_sales.units + excluded.units",
        )

    def _apply_event(
        self,
        ctx: Context,
        event: StockEvent,
        stock: dict[Key, StockState],
        history: SalesHistory,
        policy: ReorderPolicy,
    ) -> list[tuple[Any, ...]]:
        ledger = []
        touched: dict[Key, None] = {}
        occurred = event.occurred_at.isoformat()
        for m in event.movements:
            key = (event.store_id, m.sku)
            state = stock[key]
            change = m.quantity - state.on_hand if m.is_count else m.quantity
            state.on_hand += change
            ledger.append(
                (event.event_id, m.line_no, *key, change, m.kind, event.reference, occurred)
            )
            if m.sold:
                history.add(*key, event.day, m.sold)
            touched[key] = None
        for key in touched:
            state = stock[key]
            point = policy.point(key, event.day)
            if point is None or state.on_hand > point.units:
                state.alerted = False  # re-armed
            elif not state.alerted:
                state.alerted = True
                record = suggestion(key, state.on_hand, point, event.event_id, event.occurred_at)
                ctx.publish(
                    REORDER_SUGGESTIONS.name, "reorder_suggestion", store_key(key[0]), record
                )
        return ledger

    def routes(self, query: Any) -> list[Any]:
        async def stock_levels(request: Request) -> Response:
            store = request.query_params.get("store") or None
            sku = request.query_params.get("sku") or None
            levels = await query(lambda db: queries.stock_levels(db, store, sku))
            return JSONResponse([level.as_json() for level in levels])

        return [Route("/v1/stock", stock_levels, methods=["GET"])]


def load_stock(db: Database, keys: Iterable[Key]) -> dict[Key, StockState]:
    """Stock state of ``keys`` (by primary key); pairs never seen start at zero."""
    stock = {key: StockState(0, False) for key in keys}
    by_store: dict[str, list[str]] = {}
    for store, sku in sorted(stock):
        by_store.setdefault(store, []).append(sku)
    for store, skus in by_store.items():
        for chunk in chunks(skus):
            for sku, on_hand, alerted in db.fetchall(
                "SELECT sku, on_hand, alerted FROM erp_stock "
                f"WHERE store_id = ? AND sku IN ({marks(chunk)})",
                (store, *chunk),
            ):
                stock[(store, sku)] = StockState(int(on_hand), bool(alerted))
    return stock
