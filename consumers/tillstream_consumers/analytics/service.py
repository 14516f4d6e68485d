"""The analytics consumer: sales, tenders, SKUs and low stock, per store business day.

Payments carry no business day: each counts on its sale's, and one whose sale has not come
yet waits in ``an_unplaced_payments`` until it does (whichever arrives first, the tender mix
is the same). Whether payments add up to their sale is the audit's to say, not analytics'.

Each batch is first summed up in memory, so a rollup row is written once per batch however
many events touch it (fewer round trips, and DuckDB never updates one row twice in a
statement). A post-void's taking back of a sale kept before is summed in with the rest
(``post_voids.py``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tillstream.core import rules
from tillstream.core.days import DAY_FORM, day_or_none
from tillstream.core.events import Payment, ReorderSuggestion, Sale
from tillstream.core.topics import PAYMENTS, REORDER_SUGGESTIONS, SALE_VOIDS, SALES
from tillstream_consumers.analytics import gauges
from tillstream_consumers.analytics.post_voids import PostVoids, Reversal, SaleEffect, post_voids
from tillstream_consumers.analytics.report import daily_summary
from tillstream_consumers.analytics.tables import MIGRATIONS, local_hour, ts
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

_PAYMENT_SIGN = {"CAPTURED": 1, "REFUNDED": -1}  # other statuses move no money


class _Batch:
    def __init__(self) -> None:
        self.hourly: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0] * 5)
        self.skus: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.tenders: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.sale_days: dict[str, tuple[str, str, str]] = {}
        """Sale event id -> (store, business day, what it added: ``SaleEffect.dumps``)."""
        self.taken_back: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        """Payments of voided sales kept before, to take off the tender mix (negative)."""
        self.emptied: dict[str, set[tuple[str, str, str, str]]] = defaultdict(set)
        """Rows a post-void took something from, by table: gone if nothing is left."""
        self.payments: list[tuple[str, str, str, str, str, int]] = []
        """(event id, sale event id, store, method, currency, signed amount) of money moved."""
        self.reorders: dict[tuple[str, str], str] = {}

    def sale(self, sale: Sale) -> None:
        store, currency, at = sale["store_id"], sale["currency"], sale["occurred_at"]
        day = sale["business_day"].isoformat()  # the store's trading day, not the UTC one
        hour = local_hour(at, sale["utc_offset_minutes"])
        units = lines = returns = 0
        skus: dict[str, list[int]] = {}
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
            sku = skus.setdefault(line["sku"], [0, 0])
            sku[0] += qty
            sku[1] += to_units(line["extended_amount"], MONEY_SCALE) * kind.money
        net = to_units(rules.sale_revenue(sale), MONEY_SCALE)  # the CRM's spend too
        effect = SaleEffect(
            hour,
            currency,
            (units, net, lines, returns),
            tuple((k, q, a) for k, (q, a) in skus.items()),
        )
        self._add(store, day, effect, 1)
        self.sale_days[str(sale["event_id"])] = (store, day, effect.dumps())

    def take_back(self, sale: Reversal) -> None:
        """A voided sale kept before: what it added, and the payments placed on its day."""
        self._add(sale.store_id, sale.day, sale.effect, -1)
        for method, currency, amount, n in sale.tenders:
            key = (sale.store_id, sale.day, method, currency)
            tender = self.taken_back[key]
            tender[0] -= amount
            tender[1] -= n
            self.emptied["an_tenders"].add(key)

    def _add(self, store: str, day: str, effect: SaleEffect, sign: int) -> None:
        key = (store, day, effect.hour, effect.currency)
        hourly = self.hourly[key]
        for i, delta in enumerate((1, *effect.totals)):
            hourly[i] += sign * delta
        if sign < 0:
            self.emptied["an_sales_hourly"].add(key)
        for sku, qty, amount in effect.skus:
            key = (store, day, sku, effect.currency)
            row = self.skus[key]
            row[0] += sign * qty
            row[1] += sign * amount
            if sign < 0:
                self.emptied["an_sku_daily"].add(key)

    def payment(self, payment: Payment) -> None:
        sign = _PAYMENT_SIGN.get(payment["status"], 0)
        if sign:  # a declined or pending payment moves no money
            self.payments.append(
                (
                    str(payment["event_id"]),
                    str(payment["sale_event_id"]),
                    payment["store_id"],
                    payment["method"],
                    payment["currency"],
                    to_units(payment["amount"], MONEY_SCALE) * sign,
                )
            )

    def reorder(self, suggestion: ReorderSuggestion) -> None:
        key = (suggestion["store_id"], suggestion["sku"])
        self.reorders[key] = max(self.reorders.get(key, ""), ts(suggestion["occurred_at"]))

    def write(self, db: Database) -> None:
        _add_to_totals(
            db,
            "an_sales_hourly",
            ("store_id", "sale_day", "hour_start", "currency"),
            ("transactions", "units", "net_units", "lines", "return_lines"),
            [(*k, *v) for k, v in self.hourly.items()],
        )
        _add_to_totals(
            db,
            "an_sku_daily",
            ("store_id", "sale_day", "sku", "currency"),
            ("units", "net_units"),
            [(*k, *v) for k, v in self.skus.items()],
        )
        self._write_tenders(db)
        db.insert_many(
            "an_reorders",
            ("store_id", "sku", "last_at"),
            [(*k, v) for k, v in self.reorders.items()],
            "ON CONFLICT (store_id, sku) DO UPDATE SET last_at = CASE "
            "WHEN excluded.last_at > an_reorders.last_at THEN excluded.last_at "
            "ELSE an_reorders.last_at END",
        )

    def _write_tenders(self, db: Database) -> None:
        """Payments onto their sale's business day; those whose sale is not in yet wait."""
        db.insert_many(
            "an_sale_days",
            ("sale_event_id", "store_id", "sale_day", "undo"),
            [(i, *kept) for i, kept in self.sale_days.items()],
            "ON CONFLICT (sale_event_id) DO NOTHING",  # a sale resent with its id: same day
        )
        days = {i: (store, day) for i, (store, day, _) in self.sale_days.items()}
        wanted = {p[1] for p in self.payments} - days.keys()
        days |= _sale_days(db, sorted(wanted))
        tenders = self.taken_back
        placed: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        """(sale, store, method, currency) -> [amount, payments]: what a post-void takes back."""
        unplaced = []
        for event_id, sale_id, store, method, currency, amount in self.payments:
            if sale_id in days:
                for row in (tenders[(store, days[sale_id][1], method, currency)],
                            placed[(sale_id, store, method, currency)]):  # fmt: skip
                    row[0] += amount
                    row[1] += 1
            else:
                unplaced.append((event_id, sale_id, store, method, currency, amount, 1))
        # This batch's sales place the payments that came before them.
        waiting = _unplaced(db, sorted(self.sale_days))
        for sale_id, store, method, currency, amount, n in waiting:
            for row in (tenders[(store, self.sale_days[sale_id][1], method, currency)],
                        placed[(sale_id, store, method, currency)]):  # fmt: skip
                row[0] += amount
                row[1] += n
        for chunk in _chunks(sorted({w[0] for w in waiting})):
            db.execute(
                f"DELETE FROM an_unplaced_payments WHERE sale_event_id IN ({_marks(chunk)})",
                chunk,
            )
        db.insert_many(
            "an_unplaced_payments",
            ("event_id", "sale_event_id", "store_id", "method", "currency", "amount_units",
             "payments"),
            unplaced,
            "ON CONFLICT (event_id) DO NOTHING",
        )  # fmt: skip
        _add_to_totals(
            db,
            "an_tenders",
            ("store_id", "sale_day", "method", "currency"),
            ("amount_units", "payments"),
            [(*k, *v) for k, v in tenders.items()],
        )
        db.insert_many(
            "an_placed_payments",
            ("sale_event_id", "store_id", "method", "currency", "amount_units", "payments"),
            [(*k, *v) for k, v in placed.items()],
        )

    def drop_empty(self, db: Database) -> None:
        """Rows a post-void took back to nothing go, as if never written: an hour, a SKU
        day or a tender without anything in it."""
        for table, (key, totals) in _ROLLUPS.items():
            empty = " AND ".join(f"{c} = 0" for c in totals)
            match = " AND ".join(f"{c} = ?" for c in key)
            rows = sorted(self.emptied.get(table, ()))
            db.executemany(f"DELETE FROM {table} WHERE {match} AND {empty}", rows)


_ROLLUPS = {
    "an_sales_hourly": (
        ("store_id", "sale_day", "hour_start", "currency"),
        ("transactions", "units", "net_units", "lines", "return_lines"),
    ),
    "an_sku_daily": (("store_id", "sale_day", "sku", "currency"), ("units", "net_units")),
    "an_tenders": (("store_id", "sale_day", "method", "currency"), ("amount_units", "payments")),
}
"""Key and total columns of the rollups a post-void takes from."""


def _post_voids(db: Database, records: list[Record]) -> PostVoids:
    """The batch's post-voids (remembered), and the sales voided among its sales' and
    payments'."""
    sales = set()
    for r in records:
        if r.event == "sale":
            sales.add((r.value["store_id"], str(r.event_id)))
        elif r.event == "payment":
            sales.add((r.value["store_id"], str(r.value["sale_event_id"])))
    return post_voids(db, [r for r in records if r.event == "sale_void"], sales)


def _chunks(ids: list[str], size: int = 500) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _marks(chunk: Sequence[str]) -> str:
    return ", ".join("?" * len(chunk))


def _sale_days(db: Database, sale_ids: list[str]) -> dict[str, tuple[str, str]]:
    """Sale event id -> (store, business day), of the sales already kept."""
    found: dict[str, tuple[str, str]] = {}
    for chunk in _chunks(sale_ids):
        for sale_id, store, day in db.fetchall(
            "SELECT sale_event_id, store_id, sale_day FROM an_sale_days "
            f"WHERE sale_event_id IN ({_marks(chunk)})",
            chunk,
        ):
            found[str(sale_id)] = (str(store), str(day))
    return found


def _unplaced(db: Database, sale_ids: list[str]) -> list[tuple[str, str, str, str, int, int]]:
    """The waiting payments of these sales: (sale id, store, method, currency, amount, n)."""
    rows: list[tuple[str, str, str, str, int, int]] = []
    for chunk in _chunks(sale_ids):
        rows += [
            (str(i), str(s), str(m), str(c), int(a), int(n))
            for i, s, m, c, a, n in db.fetchall(
                "SELECT sale_event_id, store_id, method, currency, SUM(amount_units), "
                "SUM(payments) FROM an_unplaced_payments "
                f"WHERE sale_event_id IN ({_marks(chunk)}) "
                "GROUP BY sale_event_id, store_id, method, currency",
                chunk,
            )
        ]
    return rows


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
    topics = (SALES.name, PAYMENTS.name, REORDER_SUGGESTIONS.name, SALE_VOIDS.name)
    migrations = MIGRATIONS
    # The embedded store; scaled-out instances share one PostgreSQL database instead.
    default_db_url = "duckdb:///analytics.duckdb"

    def apply(self, ctx: Context, records: list[Record]) -> None:
        batch = _Batch()
        undo = _post_voids(ctx.db, records)
        for record in records:
            if record.event == "sale":
                if (record.value["store_id"], str(record.event_id)) not in undo.voided:
                    batch.sale(record.sale())
            elif record.event == "payment":
                payment = record.payment()
                if (payment["store_id"], str(payment["sale_event_id"])) not in undo.voided:
                    batch.payment(payment)
            elif record.event == "reorder_suggestion":
                batch.reorder(record.reorder_suggestion())
            elif record.event != "sale_void":
                raise PermanentError(f"analytics does not read {record.event} events")
        for sale in undo.reversals:
            batch.take_back(sale)
        batch.write(ctx.db)
        if undo.reversals:
            batch.drop_empty(ctx.db)

    def routes(self, query: Query) -> list[BaseRoute]:
        async def report(request: Request) -> Response:
            # What `tillstream report` reads while this service holds its DuckDB file.
            store = request.query_params.get("store")
            day = day_or_none(request.query_params.get("day", ""))
            if not store or day is None:
                return JSONResponse(
                    {"error": f"query parameters: store=ID and day={DAY_FORM}"}, status_code=400
                )
            summary = await query(lambda db: daily_summary(db, store, day.isoformat()))
            return JSONResponse(summary.as_json())

        return [Route("/v1/report", report, methods=["GET"])]

    def refresh(self, db: Database) -> None:
        # From the database, not from what this instance applied: right after a restart, and
        # the same on every instance sharing one PostgreSQL store.
        gauges.update(db, datetime.now(UTC))


__all__ = ["Analytics"]
