"""A consumer whose effects tests can count: one row per applied sale, nothing unique, so
an event applied twice shows as two rows. Receipts named ``POISON...`` fail permanently
until the receipt is listed in ``fixes`` (the "fix" before a dead-letter replay)."""

from __future__ import annotations

import os
import time

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from tillstream_consumers.runtime import (
    Consumer,
    Context,
    Database,
    PermanentError,
    Query,
    Record,
)


class Effects(Consumer):
    name = os.environ.get("TILLSTREAM_TEST_GROUP", "test-effects")
    topics = ("tillstream.sales",)
    migrations = (
        "CREATE TABLE effects (event_id TEXT NOT NULL, store_id TEXT NOT NULL, "
        "part INTEGER NOT NULL, kafka_offset BIGINT NOT NULL)",
        "CREATE TABLE fixes (receipt TEXT PRIMARY KEY)",
    )
    delay_per_batch = float(os.environ.get("TILLSTREAM_TEST_DELAY", "0"))
    delay_stores = os.environ.get("TILLSTREAM_TEST_DELAY_STORES", "")
    """Only batches with a store id starting with this are slowed (others' history is not)."""

    def apply(self, ctx: Context, records: list[Record]) -> None:
        fixed = {receipt for (receipt,) in ctx.db.fetchall("SELECT receipt FROM fixes")}
        for r in records:
            receipt = r.value["receipt_number"]
            if receipt.startswith("POISON") and receipt not in fixed:
                raise PermanentError(f"receipt {receipt} cannot be applied")
        ctx.db.executemany(
            "INSERT INTO effects (event_id, store_id, part, kafka_offset) VALUES (?, ?, ?, ?)",
            [(r.event_id, r.value["store_id"], r.partition, r.offset) for r in records],
        )
        ours = any(r.value["store_id"].startswith(self.delay_stores) for r in records)
        if self.delay_per_batch and ours:  # widen the window in which a kill lands mid-batch
            time.sleep(self.delay_per_batch)

    def routes(self, query: Query) -> list[BaseRoute]:
        """A read API, as the ERP's /v1/stock: rows applied per store."""

        async def effects(_: Request) -> JSONResponse:
            def count(db: Database) -> int:
                row = db.fetchone("SELECT COUNT(*) FROM effects")
                return int(row[0]) if row else 0

            return JSONResponse({"effects": await query(count)})

        return [Route("/v1/effects", effects)]


class BadSql(Effects):
    """A consumer with a bug: the receipt ``bad_receipt`` runs SQL naming a column that does
    not exist (a permanent error, whatever the database)."""

    bad_receipt = "BADSQL"

    def apply(self, ctx: Context, records: list[Record]) -> None:
        if any(r.value["receipt_number"] == self.bad_receipt for r in records):
            ctx.db.execute("SELECT no_such_column FROM effects")
        super().apply(ctx, records)


class Relay(Effects):
    """Publishes every sale it applies again, to ``relay_topic`` (as the ERP publishes its
    reorder suggestions)."""

    relay_topic = "tillstream.test.relay"

    def apply(self, ctx: Context, records: list[Record]) -> None:
        super().apply(ctx, records)
        for r in records:
            ctx.publish(self.relay_topic, "sale", r.key or b"", r.value)
