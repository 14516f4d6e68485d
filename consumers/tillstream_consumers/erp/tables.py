"""The ERP inventory service's tables (portable SQL: SQLite, PostgreSQL and DuckDB).

Quantities are integer thousandths (``QTY_SCALE``); days and times are ISO text, and event
times are also kept as microseconds since the epoch (``at_us``) to order counts and changes.
Every statement says ``IF NOT EXISTS`` so the CLI (``tillstream stock``) and a consumer
running under another group name can share one database. ``erp_items`` is the item master
as the topic ``tillstream.items`` holds it (``items.py``).
"""

from __future__ import annotations

from tillstream_consumers.runtime.db import Migration

COMPONENT = "erp-inventory"
"""Migration component (and consumer group) of the service."""

MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE IF NOT EXISTS erp_ledger (
        event_id    TEXT NOT NULL,
        line_no     INTEGER NOT NULL,
        store_id    TEXT NOT NULL,
        sku         TEXT NOT NULL,
        qty_change  BIGINT NOT NULL,
        kind        TEXT NOT NULL,
        reference   TEXT,
        occurred_at TEXT NOT NULL,
        PRIMARY KEY (event_id, line_no)
    );
    CREATE INDEX IF NOT EXISTS erp_ledger_item ON erp_ledger (store_id, sku, occurred_at);
    CREATE TABLE IF NOT EXISTS erp_stock (
        store_id   TEXT NOT NULL,
        sku        TEXT NOT NULL,
        on_hand    BIGINT NOT NULL,
        alerted    INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (store_id, sku)
    );
    CREATE INDEX IF NOT EXISTS erp_stock_sku ON erp_stock (sku);
    CREATE TABLE IF NOT EXISTS erp_daily_sales (
        store_id  TEXT NOT NULL,
        sku       TEXT NOT NULL,
        sales_day TEXT NOT NULL,
        units     BIGINT NOT NULL,
        PRIMARY KEY (store_id, sku, sales_day)
    );
    CREATE TABLE IF NOT EXISTS erp_items (
        sku            TEXT PRIMARY KEY,
        description    TEXT,
        reorder_point  BIGINT,
        lead_time_days INTEGER,
        supplier       TEXT
    )
    """,
)


def _event_time_migration(dialect: str) -> str:
    """Migration 2: counts in event time (docs/erp.md, "Counts", "Upgrading").

    Existing ledger rows get ``at_us`` from ``occurred_at``. Existing count rows (kind
    ``counted``, line 0) become counts whose counted quantity is the stock the ledger shows
    right after them in event time, so stock on hand and every booked adjustment stay as
    they are; each pair's latest count becomes its last count.
    """
    at_us = {
        # isoformat(): seconds via strftime (zone applied), then the 6 digits after a '.'.
        "sqlite": "CAST(strftime('%s', occurred_at) AS INTEGER) * 1000000 + CASE WHEN "
        "substr(occurred_at, 20, 1) = '.' THEN CAST(substr(occurred_at, 21, 6) AS INTEGER) "
        "ELSE 0 END",
        "postgresql": "CAST(EXTRACT(EPOCH FROM CAST(occurred_at AS TIMESTAMPTZ)) * 1000000 "
        "AS BIGINT)",
        "duckdb": "epoch_us(CAST(occurred_at AS TIMESTAMPTZ))",
    }[dialect]
    # Event ids order counts at one instant: byte order everywhere ("C" on PostgreSQL).
    collate = ' COLLATE "C"' if dialect == "postgresql" else ""
    # DuckDB cannot index a table it has updated in the same transaction; it scans fast.
    index = "CREATE INDEX IF NOT EXISTS erp_ledger_at ON erp_ledger (store_id, sku, at_us);"
    if dialect == "duckdb":
        index = ""
    return f"""
    DROP INDEX IF EXISTS erp_ledger_item;
    ALTER TABLE erp_ledger ADD COLUMN at_us BIGINT;
    ALTER TABLE erp_ledger ADD COLUMN counted BIGINT;
    UPDATE erp_ledger SET at_us = {at_us};
    UPDATE erp_ledger SET counted = (
        SELECT SUM(p.qty_change) FROM erp_ledger p
        WHERE p.store_id = erp_ledger.store_id AND p.sku = erp_ledger.sku
          AND (p.at_us < erp_ledger.at_us OR (p.at_us = erp_ledger.at_us
               AND (p.kind <> 'counted' OR p.line_no <> 0
                    OR p.event_id{collate} <= erp_ledger.event_id{collate})))
    ) WHERE kind = 'counted' AND line_no = 0;
    CREATE TABLE IF NOT EXISTS erp_counts (
        store_id TEXT NOT NULL,
        sku      TEXT NOT NULL,
        at_us    BIGINT NOT NULL,
        event_id TEXT{collate} NOT NULL,
        counted  BIGINT NOT NULL,
        PRIMARY KEY (store_id, sku, at_us, event_id)
    );
    INSERT INTO erp_counts (store_id, sku, at_us, event_id, counted)
        SELECT store_id, sku, at_us, event_id, counted FROM erp_ledger
        WHERE counted IS NOT NULL;
    {index}
    ALTER TABLE erp_stock ADD COLUMN count_at BIGINT;
    ALTER TABLE erp_stock ADD COLUMN count_id TEXT;
    UPDATE erp_stock SET
        count_at = (SELECT c.at_us FROM erp_counts c
                    WHERE c.store_id = erp_stock.store_id AND c.sku = erp_stock.sku
                    ORDER BY c.at_us DESC, c.event_id DESC LIMIT 1),
        count_id = (SELECT c.event_id FROM erp_counts c
                    WHERE c.store_id = erp_stock.store_id AND c.sku = erp_stock.sku
                    ORDER BY c.at_us DESC, c.event_id DESC LIMIT 1)
    """


MIGRATIONS += ({d: _event_time_migration(d) for d in ("sqlite", "postgresql", "duckdb")},)

# Migration 3: the item master from tillstream.items (stock item or not, unit, when published).
MIGRATIONS += (
    """
    ALTER TABLE erp_items ADD COLUMN stock_item INTEGER;
    ALTER TABLE erp_items ADD COLUMN unit_of_measure TEXT;
    ALTER TABLE erp_items ADD COLUMN published_at TEXT
    """,
)

# Migration 4: post-voids (docs/erp.md, "Post-voids"). Each ledger row keeps the day its units
# sold count on (a sale's business day), so a post-void takes them off that day; rows written
# before keep NULL (their UTC date is used). ``erp_voids``: each sale voided, once, whether or
# not the sale has come yet.
_VOIDS = """
    CREATE TABLE IF NOT EXISTS erp_voids (
        store_id        TEXT NOT NULL,
        voided_event_id TEXT NOT NULL,
        event_id        TEXT NOT NULL,
        occurred_at     TEXT NOT NULL,
        PRIMARY KEY (store_id, voided_event_id)
    )
"""
# DuckDB cannot alter a table it updated in the same transaction (migration 2 does, and an
# old database runs both at once): it copies the ledger into a new table instead.
_LEDGER_WITH_DAY = """
    CREATE TABLE erp_ledger_v4 (
        event_id    TEXT NOT NULL,
        line_no     INTEGER NOT NULL,
        store_id    TEXT NOT NULL,
        sku         TEXT NOT NULL,
        qty_change  BIGINT NOT NULL,
        kind        TEXT NOT NULL,
        reference   TEXT,
        occurred_at TEXT NOT NULL,
        at_us       BIGINT,
        counted     BIGINT,
        sales_day   TEXT,
        PRIMARY KEY (event_id, line_no)
    );
    INSERT INTO erp_ledger_v4 SELECT event_id, line_no, store_id, sku, qty_change, kind,
        reference, occurred_at, at_us, counted, NULL FROM erp_ledger;
    DROP TABLE erp_ledger;
    ALTER TABLE erp_ledger_v4 RENAME TO erp_ledger;
"""
MIGRATIONS += (
    {
        "sqlite": "ALTER TABLE erp_ledger ADD COLUMN sales_day TEXT;" + _VOIDS,
        "postgresql": "ALTER TABLE erp_ledger ADD COLUMN sales_day TEXT;" + _VOIDS,
        "duckdb": _LEDGER_WITH_DAY + _VOIDS,
    },
)
