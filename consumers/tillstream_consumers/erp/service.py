"""The ERP inventory consumer: a stock ledger, stock on hand per store and SKU, and reorder
suggestions (see ``docs/erp.md``).

Each batch costs a few indexed reads for the (store, sku) pairs it touches and a few
``executemany`` writes; a count, or a change from before a SKU's last count, adds a few
indexed reads of that SKU's rows (``tillstream_consumers/erp/stock.py``). Nothing grows with
the size of the ledger.
"""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tillstream.core.topics import (
    ITEMS,
    REORDER_SUGGESTIONS,
    SALE_VOIDS,
    SALES,
    STOCK_MOVEMENTS,
    store_key,
)
from tillstream_consumers.erp import queries
from tillstream_consumers.erp.items import apply_items
from tillstream_consumers.erp.movements import StockEvent, stock_event
from tillstream_consumers.erp.post_voids import post_voids
from tillstream_consumers.erp.reorder import (
    Key,
    ReorderPolicy,
    SalesHistory,
    load_items,
    needs_history,
    suggestion,
)
from tillstream_consumers.erp.stock import StockBook
from tillstream_consumers.erp.tables import COMPONENT, MIGRATIONS
from tillstream_consumers.runtime.api import Consumer, Context, Query, Record


class ErpInventory(Consumer):
    name = COMPONENT
    topics = (SALES.name, STOCK_MOVEMENTS.name, ITEMS.name, SALE_VOIDS.name)
    publishes = (REORDER_SUGGESTIONS.name,)
    migrations = MIGRATIONS

    def apply(self, ctx: Context, records: list[Record]) -> None:
        # The item master first: a reorder point that arrives with a sale applies to it.
        apply_items(ctx.db, [r for r in records if r.topic == ITEMS.name])
        moving = [r for r in records if r.topic not in (ITEMS.name, SALE_VOIDS.name)]
        voids = [r for r in records if r.topic == SALE_VOIDS.name]
        undo = post_voids(ctx.db, voids, [r for r in moving if r.topic == SALES.name])
        # A voided sale is never applied; one applied before is reversed, after the rest.
        events = [stock_event(r) for r in moving if undo.applies(r)] + undo.reversals
        if not events:
            return
        keys = {(e.store_id, m.sku) for e in events for m in e.movements}
        book = StockBook(ctx.db, keys)
        items = load_items(ctx.db, {sku for _, sku in keys})
        since = min(e.day for e in events) - timedelta(days=self.settings.erp_velocity_days - 1)
        history = SalesHistory(ctx.db, {k for k in keys if needs_history(items, k[1])}, since)
        policy = ReorderPolicy(self.settings, items, history)
        for event in events:
            self._apply_event(ctx, event, book, history, policy)
        book.write(ctx.now.isoformat())
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
        book: StockBook,
        history: SalesHistory,
        policy: ReorderPolicy,
    ) -> None:
        touched: dict[Key, None] = {}
        for m in event.movements:
            key = (event.store_id, m.sku)
            book.move(event, m)
            if m.sold:
                history.add(*key, event.day, m.sold)
            touched[key] = None
        for key in touched:
            state = book.stock[key]
            point = policy.point(key, event.day)
            if point is None or state.on_hand > point.units:
                state.alerted = False  # re-armed
            elif not state.alerted and not event.reverses:
                state.alerted = True
                record = suggestion(key, state.on_hand, point, event.event_id, event.occurred_at)
                ctx.publish(
                    REORDER_SUGGESTIONS.name, "reorder_suggestion", store_key(key[0]), record
                )

    def routes(self, query: Query) -> list[BaseRoute]:
        async def stock_levels(request: Request) -> Response:
            store = request.query_params.get("store") or None
            sku = request.query_params.get("sku") or None
            levels = await query(lambda db: queries.stock_levels(db, store, sku))
            return JSONResponse([level.as_json() for level in levels])

        return [Route("/v1/stock", stock_levels, methods=["GET"])]
