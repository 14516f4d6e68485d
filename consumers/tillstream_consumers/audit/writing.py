"""Writing the audit's facts: one row per sale, payment, till event and post-void, each with
when it was published (its Kafka timestamp), written once (``ON CONFLICT DO NOTHING``: an
event that comes again changes nothing)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tillstream.core.events import Payment, Sale, SaleVoid, TillEvent
from tillstream_consumers.audit.facts import content_digest, receipt_digest, ts
from tillstream_consumers.runtime.api import MONEY_SCALE, to_units
from tillstream_consumers.runtime.db import Database


def insert_facts(
    db: Database, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], conflict: str
) -> None:
    """``db.insert_many``, but on PostgreSQL the rows go as one JSON parameter
    (``json_populate_recordset``): a short statement psycopg parses once, where a multi-row
    VALUES of thousands of placeholders is split in Python on every batch (the conflict
    clause rules out COPY). The audit's columns are text and integers, which JSON keeps."""
    if db.dialect != "postgresql" or not rows:
        db.insert_many(table, columns, rows, conflict)
        return
    names = ", ".join(columns)
    payload = json.dumps([dict(zip(columns, r, strict=True)) for r in rows])
    db.execute(
        f"INSERT INTO {table} ({names}) SELECT {names} "
        f"FROM json_populate_recordset(NULL::{table}, CAST(? AS json)) {conflict}",
        (payload,),
    )


def store_sales(db: Database, sales: Sequence[tuple[Sale, int]], received_at: datetime) -> None:
    received = ts(received_at)
    insert_facts(
        db,
        "audit_transactions",
        (
            "event_id",
            "store_id",
            "business_day",
            "terminal_id",
            "number",
            "cashier_id",
            "occurred_at",
            "utc_offset_minutes",
            "currency",
            "net_amount",
            "content",
            "problems",
            "received_at",
            "published_ms",
        ),
        [
            (
                s["event_id"],
                s["store_id"],
                s["business_day"].isoformat(),
                s["terminal_id"],
                s["receipt_number"],
                s["cashier_id"],
                ts(s["occurred_at"]),
                s["utc_offset_minutes"],
                s["currency"],
                to_units(s["totals"]["net_amount"], MONEY_SCALE),
                receipt_digest(s),
                None,  # totals problems: the runtime dead-letters a sale with any (validity.py)
                received,
                published_ms,
            )
            for s, published_ms in sales
        ],
        "ON CONFLICT (event_id) DO NOTHING",
    )


def store_controls(
    db: Database, events: Sequence[tuple[TillEvent, int]], received_at: datetime
) -> None:
    received = ts(received_at)
    insert_facts(
        db,
        "audit_controls",
        (
            "event_id",
            "store_id",
            "business_day",
            "terminal_id",
            "kind",
            "number",
            "operator_id",
            "occurred_at",
            "utc_offset_minutes",
            "currency",
            "reason",
            "content",
            "received_at",
            "published_ms",
        ),
        [
            (
                e["event_id"],
                e["store_id"],
                e["business_day"].isoformat(),
                e["terminal_id"],
                e["kind"],
                e["sequence_number"],
                e["operator_id"],
                ts(e["occurred_at"]),
                e["utc_offset_minutes"],
                e["currency"],
                e["reason"],
                content_digest(dict(e)),
                received,
                published_ms,
            )
            for e, published_ms in events
        ],
        "ON CONFLICT (event_id) DO NOTHING",
    )
    insert_facts(
        db,
        "audit_control_amounts",
        ("event_id", "tender", "amount"),
        [
            (e["event_id"], t["tender"], to_units(t["amount"], MONEY_SCALE))
            for e, _ in events
            for t in e["tenders"]
        ],
        "ON CONFLICT (event_id, tender) DO NOTHING",
    )


def store_payments(
    db: Database, payments: Sequence[tuple[Payment, int]], received_at: datetime
) -> None:
    """Each payment with when it was published (its Kafka timestamp, milliseconds); the
    same for :func:`store_sales` and :func:`store_controls`."""
    received = ts(received_at)
    insert_facts(
        db,
        "audit_payments",
        (
            "event_id",
            "sale_event_id",
            "store_id",
            "terminal_id",
            "method",
            "status",
            "amount",
            "occurred_at",
            "received_at",
            "published_ms",
        ),
        [
            (
                p["event_id"],
                str(p["sale_event_id"]),
                p["store_id"],
                p["terminal_id"],
                p["method"],
                p["status"],
                to_units(p["amount"], MONEY_SCALE),
                ts(p["occurred_at"]),
                received,
                published_ms,
            )
            for p, published_ms in payments
        ],
        "ON CONFLICT (event_id) DO NOTHING",
    )


def store_voids(db: Database, voids: Sequence[tuple[SaleVoid, int]], received_at: datetime) -> None:
    """Each post-void with when it was published, as :func:`store_payments`."""
    received = ts(received_at)
    insert_facts(
        db,
        "audit_voids",
        (
            "event_id",
            "voided_event_id",
            "store_id",
            "business_day",
            "terminal_id",
            "number",
            "voided_terminal_id",
            "voided_number",
            "cashier_id",
            "occurred_at",
            "utc_offset_minutes",
            "currency",
            "amount",
            "reason",
            "content",
            "received_at",
            "published_ms",
        ),
        [
            (
                v["event_id"],
                str(v["voided_event_id"]),
                v["store_id"],
                v["business_day"].isoformat(),
                v["terminal_id"],
                v["receipt_number"],
                v["voided_terminal_id"] or v["terminal_id"],  # null: the same till
                v["voided_receipt_number"],
                v["cashier_id"],
                ts(v["occurred_at"]),
                v["utc_offset_minutes"],
                v["currency"],
                None if v["voided_amount"] is None else to_units(v["voided_amount"], MONEY_SCALE),
                v["reason"],
                content_digest(dict(v)),
                received,
                published_ms,
            )
            for v, published_ms in voids
        ],
        "ON CONFLICT (event_id) DO NOTHING",
    )
