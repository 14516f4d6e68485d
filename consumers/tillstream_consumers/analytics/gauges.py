"""Business gauges on the service's /metrics, read from the database on every refresh.

Read from the store rather than counted as events are applied, so they are right after a
restart and identical on every instance sharing one PostgreSQL store. Prometheus values are
floats: money becomes a float only here, at the very edge, for display.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Gauge

from tillstream_consumers.analytics.tables import ts
from tillstream_consumers.runtime.api import MONEY_SCALE, from_units
from tillstream_consumers.runtime.db import Database

SALES_AMOUNT = Gauge(
    "tillstream_business_sales_amount",
    "Net sales of each store's current business day, per store and currency.",
    ["store", "currency"],
)
TRANSACTIONS = Gauge(
    "tillstream_business_transactions",
    "Sales transactions of each store's current business day, per store.",
    ["store"],
)
PAYMENT_AMOUNT = Gauge(
    "tillstream_business_payment_amount",
    "Captured minus refunded payments of each store's current business day, per method and "
    "currency.",
    ["method", "currency"],
)
LOW_STOCK = Gauge(
    "tillstream_business_low_stock_skus",
    "Store and SKU pairs with a reorder suggestion in the last 24 hours.",
)

_CURRENT = (
    "(SELECT store_id AS cur_store, MAX(sale_day) AS cur_day FROM an_sales_hourly "
    "WHERE sale_day BETWEEN ? AND ? GROUP BY store_id) cur"
)
"""Each store's current business day: its latest within a day of the UTC date (a store east
of UTC is a day ahead before UTC midnight; one west still trades yesterday after it)."""

# Label sets set by the previous refresh: yesterday's stores must disappear, not stay frozen.
_shown: dict[str, set[tuple[str, ...]]] = {}


def _publish(name: str, gauge: Gauge, values: dict[tuple[str, ...], float]) -> None:
    for labels in _shown.get(name, set()) - values.keys():
        gauge.remove(*labels)
    for labels, value in values.items():
        gauge.labels(*labels).set(value)
    _shown[name] = set(values)


def _money(rows: list[tuple[Any, ...]]) -> dict[tuple[str, ...], float]:
    return {
        tuple(str(v) for v in row[:-1]): float(from_units(int(row[-1]), MONEY_SCALE))
        for row in rows
    }


def update(db: Database, now: datetime) -> None:
    today = now.astimezone(UTC).date()
    window = ((today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat())
    _publish(
        "sales",
        SALES_AMOUNT,
        _money(
            db.fetchall(
                "SELECT store_id, currency, SUM(net_units) FROM an_sales_hourly "
                f"JOIN {_CURRENT} ON store_id = cur_store AND sale_day = cur_day "
                "GROUP BY store_id, currency",
                window,
            )
        ),
    )
    _publish(
        "transactions",
        TRANSACTIONS,
        {
            (str(store),): float(n)
            for store, n in db.fetchall(
                "SELECT store_id, SUM(transactions) FROM an_sales_hourly "
                f"JOIN {_CURRENT} ON store_id = cur_store AND sale_day = cur_day "
                "GROUP BY store_id",
                window,
            )
        },
    )
    _publish(
        "payments",
        PAYMENT_AMOUNT,
        _money(
            db.fetchall(
                "SELECT method, currency, SUM(amount_units) FROM an_tenders "
                f"JOIN {_CURRENT} ON store_id = cur_store AND sale_day = cur_day "
                "GROUP BY method, currency",
                window,
            )
        ),
    )
    low = db.fetchone(
        "SELECT COUNT(*) FROM an_reorders WHERE last_at >= ?", (ts(now - timedelta(hours=24)),)
    )
    LOW_STOCK.set(int(low[0]) if low else 0)
