"""The ERP inventory service's tables (portable SQL: SQLite, PostgreSQL and DuckDB).

Quantities are integer thousandths (``QTY_SCALE``); days and times are ISO text.
Every statement says ``IF NOT EXISTS`` so the CLI (``tillstream items import``) and a
consumer running under another group name can share one database.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from consumers.runtime.db import Migration

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

CHUNK = 500
"""Most values bound in one ``IN (...)`` list."""

T = TypeVar("T")


def chunks(values: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    """``values`` in lists of at most ``size``."""
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def marks(values: Sequence[object]) -> str:
    """``?, ?, ?`` for an ``IN`` list of ``values``."""
    return ", ".join("?" * len(values))
