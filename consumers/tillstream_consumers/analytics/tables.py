"""The analytics store's tables: small rollups the report and the gauges read directly.

Portable between DuckDB (embedded default) and PostgreSQL (shared by scaled-out instances).
Money is in ten-thousandths and quantities in thousandths (BIGINT). Days are the store's
business days (the sale's ``business_day``), hours its local hours with their offset
(``2026-03-02T09:00+05:30``, from ``occurred_at`` and ``utc_offset_minutes``), as text that
reads the same everywhere. A payment carries neither: it counts on its sale's business day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
    # Issue 14: business days and local hours instead of UTC ones, and the reconciliation
    # handed to the audit. Rows already kept keep their UTC day as their business day and
    # their UTC hour (``...T09:00Z``, a valid offset): exact for a store at UTC that closes
    # before midnight; for any other, rebuild beside the live store (docs/analytics.md).
    """
    CREATE TABLE an_sales_hourly_bd (
        store_id     TEXT NOT NULL,
        sale_day     TEXT NOT NULL,
        hour_start   TEXT NOT NULL,
        currency     TEXT NOT NULL,
        transactions BIGINT NOT NULL,
        units        BIGINT NOT NULL,
        net_units    BIGINT NOT NULL,
        lines        BIGINT NOT NULL,
        return_lines BIGINT NOT NULL,
        PRIMARY KEY (store_id, sale_day, hour_start, currency)
    );
    INSERT INTO an_sales_hourly_bd SELECT store_id, sale_day, hour_start, currency,
        transactions, units, net_units, lines, return_lines FROM an_sales_hourly;
    DROP TABLE an_sales_hourly;
    ALTER TABLE an_sales_hourly_bd RENAME TO an_sales_hourly;
    CREATE TABLE an_sale_days (
        sale_event_id TEXT PRIMARY KEY,
        store_id      TEXT NOT NULL,
        sale_day      TEXT NOT NULL
    );
    INSERT INTO an_sale_days SELECT sale_event_id, store_id, SUBSTR(sale_at, 1, 10)
        FROM an_reconcile WHERE sale_at IS NOT NULL;
    CREATE TABLE an_unplaced_payments (
        event_id      TEXT PRIMARY KEY,
        sale_event_id TEXT NOT NULL,
        store_id      TEXT NOT NULL,
        method        TEXT NOT NULL,
        currency      TEXT NOT NULL,
        amount_units  BIGINT NOT NULL,
        payments      BIGINT NOT NULL
    );
    CREATE INDEX an_unplaced_payments_sale ON an_unplaced_payments (sale_event_id);
    DROP TABLE an_flags;
    DROP TABLE an_reconcile
    """,
)


# Post-voids (docs/analytics.md, "Post-voids"): what each sale added (``an_sale_days.undo``,
# JSON of integers) and the payments placed on its day (``an_placed_payments``), so a
# post-void read after the sale takes them back; ``an_voids``: each sale voided, once.
MIGRATIONS += (
    """
    ALTER TABLE an_sale_days ADD COLUMN undo TEXT;
    CREATE TABLE an_placed_payments (
        sale_event_id TEXT NOT NULL,
        store_id      TEXT NOT NULL,
        method        TEXT NOT NULL,
        currency      TEXT NOT NULL,
        amount_units  BIGINT NOT NULL,
        payments      BIGINT NOT NULL
    );
    CREATE INDEX an_placed_payments_sale ON an_placed_payments (sale_event_id);
    CREATE TABLE an_voids (
        store_id        TEXT NOT NULL,
        voided_event_id TEXT NOT NULL,
        event_id        TEXT NOT NULL,
        PRIMARY KEY (store_id, voided_event_id)
    )
    """,
)


def ts(value: datetime) -> str:
    """A UTC time as fixed-width text that sorts in time order."""
    # isoformat pads the year to four digits; strftime's %Y writes year 1 as '1'.
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def day_of(value: datetime) -> str:
    """The UTC day of ``value`` (the reorders' 24 hours are counted in UTC)."""
    return value.astimezone(UTC).date().isoformat()


def local_hour(value: datetime, offset_minutes: int) -> str:
    """The store-local hour of ``value``, with its offset: ``2026-03-02T09:00+05:30``."""
    local = value.astimezone(UTC) + timedelta(minutes=offset_minutes)
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{local.date().isoformat()}T{local.hour:02d}:00{sign}{hours:02d}:{minutes:02d}"
