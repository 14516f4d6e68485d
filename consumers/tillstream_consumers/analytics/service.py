"""The analytics consumer: sales, tenders, SKUs, low stock and payment reconciliation.

Each batch is first summed up in memory, so a rollup row is written once per batch however
many events touch it (fewer round trips, and DuckDB never updates one row twice in a
statement).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tillstream.core import rules
from tillstream.core.events import Payment, ReorderSuggestion, Sale
from tillstream.core.topics import PAYMENTS, REORDER_SUGGESTIONS, SALES
from tillstream_consumers.analytics import gauges
from tillstream_consumers.analytics.reconcile import reconcile
from tillstream_consumers.analytics.report import daily_summary
from tillstream_consumers.analytics.tables import MIGRATIONS, day_of, hour_of, ts
from tillstream_consumers.runtime.api import (
    MONEY_SCALE,
    QTY_SCALE,
    Consumer,
    Context,
    PermanentError,
    Query,
    Record,
    to_units,
)
from tillstream_consumers.runtime.db import Database

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_RECONCILE_COLUMNS = (
    "sale_event_id", "store_id", "currency",
    "sale_at", "sale_net",  # from the sale
    "paid", "payments", "first_payment_at",  # from its payments
)  # fmt: skip

_PAYMENT_SIGN = {"CAPTURED": 1, "REFUNDED": -1}  # other statuses move no money


class _Batch:
    def __init__(self) -> None:
        self.hourly: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0] * 5)
        self.skus: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.tenders: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.sales: list[tuple[str, str, str, str, int]] = []
        self.payments: dict[str, list[Any]] = {}
        self.reorders: dict[tuple[str, str], str] = {}

    def sale(self, sale: Sale) -> None:
        store, currency, at = sale["store_id"], sale["currency"], sale["occurred_at"]
        day = day_of(at)
        units = lines = returns = 0
        for line in sale["lines"]:
            # What a kind means is the core's (a VOID undoes the SALE line it cancels, in
            # units and money): the ERP and the CRM read the same definition.
            kind = rules.LINE_KINDS.get(line["kind"])
            if kind is None:
                raise PermanentError(
                    f"sale {sale['event_id']}: line kind {line['kind']!r} is not one of "
                    f"{', '.join(rules.LINE_KINDS)}"
                )
            lines += kind.lines
            returns += kind.is_return
            if not rules.is_stock_item(line):
                continue  # a deposit or fee: revenue (in the net total), not merchandise
            qty = to_units(line["quantity"], QTY_SCALE) * kind.units
            units += qty
            sku = self.skus[(store, day, line["sku"], currency)]
            sku[0] += qty
            sku[1] += to_units(line["extended_amount"], MONEY_SCALE) * kind.money
        net = to_units(rules.sale_revenue(sale), MONEY_SCALE)  # the CRM's spend too
        for i, delta in enumerate((1, units, net, lines, returns)):
            self.hourly[(store, hour_of(at), day, currency)][i] += delta
        self.sales.append((str(sale["event_id"]), store, currency, ts(at), net))

    def payment(self, payment: Payment) -> None:
        sign = _PAYMENT_SIGN.get(payment["status"], 0)
        amount = to_units(payment["amount"], MONEY_SCALE) * sign
        store, currency, at = payment["store_id"], payment["currency"], ts(payment["occurred_at"])
        if sign:
            key = (store, day_of(payment["occurred_at"]), payment["method"], currency)
            self.tenders[key][0] += amount
            self.tenders[key][1] += 1
        # Every payment counts for reconciliation: a declined one without a sale is odd too.
        entry = self.payments.setdefault(str(payment["sale_event_id"]), [store, currency, 0, 0, at])
        entry[2] += amount
        entry[3] += 1
        entry[4] = min(entry[4], at)

    def reorder(self, suggestion: ReorderSuggestion) -> None:
        key = (suggestion["store_id"], suggestion["sku"])
        self.reorders[key] = max(self.reorders.get(key, ""), ts(suggestion["occurred_at"]))

    def write(self, db: Database) -> None:
        _add_to_totals(
            db,
            "an_sales_hourly",
            ("store_id", "hour_start", "sale_day", "currency"),
            ("transactions", "units", "net_units", "lines", "return_lines"),
            [(*k, *v) for k, v in self.hourly.items()],
            conflict=("store_id", "hour_start", "currency"),  # sale_day follows hour_start
        )
        _add_to_totals(
            db,
            "an_sku_daily",
            ("store_id", "sale_day", "sku", "currency"),
            ("units", "net_units"),
            [(*k, *v) for k, v in self.skus.items()],
        )
        _add_to_totals(
            db,
            "an_tenders",
            ("store_id", "sale_day", "method", "currency"),
            ("amount_units", "payments"),
            [(*k, *v) for k, v in self.tenders.items()],
        )
        db.insert_many(
            "an_reorders",
            ("store_id", "sku", "last_at"),
            [(*k, v) for k, v in self.reorders.items()],
            "ON CONFLICT (store_id, sku) DO UPDATE SET last_at = CASE "
            "WHEN excluded.last_at > an_reorders.last_at THEN excluded.last_at "
            "ELSE an_reorders.last_at END",
        )
        # Payments may arrive before their sale: whichever comes first creates the row.
        db.insert_many(
            "an_reconcile",
            _RECONCILE_COLUMNS,
            [(*sale, 0, 0, None) for sale in self.sales],
            "ON CONFLICT (sale_event_id) DO UPDATE SET sale_at = excluded.sale_at, "
            "sale_net = excluded.sale_net, currency = excluded.currency",
        )
        db.insert_many(
            "an_reconcile",
            _RECONCILE_COLUMNS,
            [
                (sale_id, store, currency, None, None, paid, n, at)
                for sale_id, (store, currency, paid, n, at) in self.payments.items()
            ],
            "ON CONFLICT (sale_event_id) DO UPDATE SET "
            f"{_added('an_reconcile', ('paid', 'payments'))}, "
            "first_payment_at = CASE WHEN an_reconcile.first_payment_at IS NULL "
            "OR excluded.first_payment_at < an_reconcile.first_payment_at "
            "THEN excluded.first_payment_at ELSE an_reconcile.first_payment_at END",
        )


def _added(table: str, totals: Sequence[str]) -> str:
    """``SET`` assignments adding a conflicting row's ``totals`` to the stored ones."""
    return ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in totals)


def _add_to_totals(
    db: Database,
    table: str,
    key: Sequence[str],
    totals: Sequence[str],
    rows: list[tuple[Any, ...]],
    *,
    conflict: Sequence[str] | None = None,
) -> None:
    """Insert ``rows`` (``key`` columns, then ``totals``), or add their totals to the row
    already there (``conflict``: the unique columns, when not all of ``key``)."""
    db.insert_many(
        table,
        (*key, *totals),
        rows,
        f"ON CONFLICT ({', '.join(conflict or key)}) DO UPDATE SET {_added(table, totals)}",
    )


class Analytics(Consumer):
    name = "analytics"
    topics = (SALES.name, PAYMENTS.name, REORDER_SUGGESTIONS.name)
    migrations = MIGRATIONS
    # The embedded store; scaled-out instances share one PostgreSQL database instead.
    default_db_url = "duckdb:///analytics.duckdb"

    def apply(self, ctx: Context, records: list[Record]) -> None:
        batch = _Batch()
        for record in records:
            if record.event == "sale":
                batch.sale(record.sale())
            elif record.event == "payment":
                batch.payment(record.payment())
            elif record.event == "reorder_suggestion":
                batch.reorder(record.reorder_suggestion())
            else:
                raise PermanentError(f"analytics does not read {record.event} events")
        batch.write(ctx.db)

    def routes(self, query: Query) -> list[BaseRoute]:
        async def report(request: Request) -> Response:
            # What `tillstream report` reads while this service holds its DuckDB file.
            store = request.query_params.get("store")
            day = request.query_params.get("day", "")
            if not store or not _DAY.match(day):
                return JSONResponse(
                    {"error": "query parameters: store=ID and day=YYYY-MM-DD"}, status_code=400
                )
            summary = await query(lambda db: daily_summary(db, store, day))
            return JSONResponse(summary.as_json())

        return [Route("/v1/report", report, methods=["GET"])]

    def refresh(self, db: Database) -> None:
        # From the database, not from what this instance applied: right after a restart, and
        # the same on every instance sharing one PostgreSQL store.
        now = datetime.now(UTC)
        reconcile(db, now, self.settings.analytics_reconcile_grace_seconds)
        gauges.update(db, now)


__all__ = ["Analytics"]
