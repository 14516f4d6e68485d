"""The analytics store's tables: small rollups the report and the gauges read directly.

Portable between DuckDB (embedded default) and PostgreSQL (shared by scaled-out instances).
Money is in ten-thousandths and quantities in thousandths (BIGINT); days and hours are the
UTC ones of the event's ``occurred_at``, as fixed-width text (``2026-03-02``,
``2026-03-02T09:00Z``), which sorts in time order and reads the same everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE an_sales_hourly (
        store_id     TEXT NOT NULL,
        hour_start   TEXT NOT NULL,
        sale_day     TEXT NOT NULL,
        currency     TEXT NOT NULL,
        transactions BIGINT NOT NULL,
        units        BIGINT NOT NULL,
        net_units    BIGINT NOT NULL,
        lines        BIGINT NOT NULL,
        return_lines BIGINT NOT NULL,
        PRIMARY KEY (store_id, hour_start, currency)
    );
    CREATE TABLE an_tenders (
        store_id     TEXT NOT NULL,
        sale_day     TEXT NOT NULL,
        method       TEXT NOT NULL,
        currency     TEXT NOT NULL,
        amount_units BIGINT NOT NULL,
        payments     BIGINT NOT NULL,
        PRIMARY KEY (store_id, sale_day, method, currency)
    );
    CREATE TABLE an_sku_daily (
        store_id  TEXT NOT NULL,
        sale_day  TEXT NOT NULL,
        sku       TEXT NOT NULL,
        currency  TEXT NOT NULL,
        units     BIGINT NOT NULL,
        net_units BIGINT NOT NULL,
        PRIMARY KEY (store_id, sale_day, sku, currency)
    );
    CREATE TABLE an_reorders (
        store_id TEXT NOT NULL,
        sku      TEXT NOT NULL,
        last_at  TEXT NOT NULL,
        PRIMARY KEY (store_id, sku)
    );
    CREATE TABLE an_reconcile (
        sale_event_id    TEXT PRIMARY KEY,
        store_id         TEXT NOT NULL,
        currency         TEXT NOT NULL,
        sale_at          TEXT,
        sale_net         BIGINT,
        paid             BIGINT NOT NULL,
        payments         BIGINT NOT NULL,
        first_payment_at TEXT
    );
    CREATE TABLE an_flags (
        sale_event_id TEXT PRIMARY KEY,
        kind          TEXT NOT NULL,
        store_id      TEXT NOT NULL,
        event_at      TEXT NOT NULL,
        expected      BIGINT,
        paid          BIGINT NOT NULL,
        flagged_at    TEXT NOT NULL
    )
    """,
)


def ts(value: datetime) -> str:
    """A UTC time as fixed-width text that sorts in time order."""
    # isoformat pads the year to four digits; strftime's %Y writes year 1 as '1'.
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def day_of(value: datetime) -> str:
    return value.astimezone(UTC).date().isoformat()


def hour_of(value: datetime) -> str:
    return ts(value)[:13] + ":00Z"
