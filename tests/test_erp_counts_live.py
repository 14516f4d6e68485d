"""The differential test of counts in event time, against the real broker: simulated stores
(with stock-takes posted a little after the shelf was counted) publish to Kafka while one ERP
consumer process on SQLite is SIGKILLed four times and restarted, catching up from backlog
after each restart; a second one, in its own group on PostgreSQL, reads the same topics once,
live. Each reads the sales and stock topics in its own interleaving; both must end with the
same ledger and the same stock on hand, and that stock must be what the events say by the
documented rule. The tills post-void now and then: a voided sale counts nowhere, and its
ledger rows (with the post-void's opposite ones) are there or not by what was read first,
so the ledgers are compared without them."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.consumer_support import ConsumerProcess, scalar, wait_until
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_producer
from tillstream.core.settings import Settings
from tillstream.simulate.driver import KafkaSink, Simulator
from tillstream_consumers.erp.stock import micros
from tillstream_consumers.runtime.db import Database

SIGN = {"SALE": -1, "RETURN": 1, "VOID": 1}
KILLS = 4


class RecordingSink(KafkaSink):
    """Publishes like ``tillstream simulate`` does, and keeps what it sent, in order."""

    def __init__(self, producer: Any, codec: AvroCodec) -> None:
        super().__init__(producer, codec)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, store: str, events: list[tuple[str, dict[str, Any]]]) -> str | None:
        self.sent.extend(events)
        return await super().send(store, events)


ERP_READS = ("sale", "stock_movement")  # not payments, not till events


def voided(sent: list[tuple[str, dict[str, Any]]]) -> set[str]:
    """Event ids of the post-voided sales and of their post-voids: the ledger rows that are
    there (a sale applied, then reversed) or not (a post-void read first)."""
    voids = [r for e, r in sent if e == "sale_void"]
    return {str(r["voided_event_id"]) for r in voids} | {str(r["event_id"]) for r in voids}


def expected_stock(sent: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], int]:
    """Stock on hand by the rule, folded the plain way: each pair's movements sorted into
    event time (changes before counts at one instant, counts by event id); a post-voided
    sale as if never rung up."""
    moves: dict[tuple[str, str], list[tuple[int, int, str, int]]] = defaultdict(list)
    gone = voided(sent)
    for event, record in sent:
        t = micros(record["occurred_at"])
        if event == "sale" and str(record["event_id"]) in gone:
            continue
        if event == "sale":
            for line in record["lines"]:
                if not line["stock_item"]:
                    continue  # a bottle deposit is money, not stock
                qty = int(SIGN[line["kind"]] * line["quantity"] * 1000)
                moves[(record["store_id"], line["sku"])].append((t, 0, "", qty))
        elif event == "stock_movement":
            is_count = record["quantity_type"] == "COUNT"
            moves[(record["store_id"], record["sku"])].append(
                (
                    t,
                    int(is_count),
                    record["event_id"] if is_count else "",
                    int(record["quantity"] * 1000),
                )
            )
    stock = {}
    for key, seq in moves.items():
        level = 0
        for _t, is_count, _id, qty in sorted(seq):
            level = qty if is_count else level + qty
        stock[key] = level
    return stock


def late_counts(sent: list[tuple[str, dict[str, Any]]]) -> int:
    """Counts sent after a sale of their store that happened later than the count."""
    latest: dict[str, Any] = {}
    late = 0
    for event, record in sent:
        store, at = record["store_id"], record["occurred_at"]
        if event == "stock_movement" and record["quantity_type"] == "COUNT":
            late += store in latest and latest[store] > at
        elif event == "sale":
            latest[store] = max(at, latest.get(store, at))
    return late


def snapshot(
    url: str, prefix: str, gone: set[str]
) -> tuple[dict[tuple[str, str], int], list[tuple[Any, ...]]]:
    db = Database(url)
    try:
        stock = {
            (str(s), str(k)): int(q)
            for s, k, q in db.fetchall(
                "SELECT store_id, sku, on_hand FROM erp_stock WHERE store_id LIKE ?",
                (prefix + "%",),
            )
        }
        ledger = sorted(
            tuple(str(v) if v is not None else None for v in row)
            for row in db.fetchall(
                "SELECT event_id, line_no, store_id, sku, qty_change, kind, occurred_at "
                "FROM erp_ledger WHERE store_id LIKE ?",
                (prefix + "%",),
            )
            if str(row[0]) not in gone
        )
    finally:
        db.close()
    return stock, ledger


async def test_a_killed_erp_and_a_live_one_end_with_the_same_stock_and_ledger(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path, postgres_url: str
) -> None:
    prefix = f"K{uuid.uuid4().hex[:5]}"
    stores = [f"{prefix}{n:03d}" for n in (1, 2)]
    producer = make_producer(kafka_topics)
    await producer.start()
    sink = RecordingSink(producer, codec)
    simulator = Simulator(stores, sink, rate=250, seed=29, bad_ratio=0, count_interval=2.0)
    killed_url = f"sqlite:///{tmp_path / 'killed.db'}"

    def process(name: str, url: str) -> ConsumerProcess:
        return ConsumerProcess(
            "erp",
            kafka_topics.kafka_bootstrap_servers,
            url,
            tmp_path / name,
            env={"TILLSTREAM_CONSUMER_BATCH_SIZE": "50"},
            args=["--group", f"erp-{name}-{prefix}"],
        )

    def rows(url: str, gone: set[str]) -> int:
        """Ledger rows of the stores, but of ``gone`` events."""
        db = Database(url)
        try:
            found = db.fetchall(
                "SELECT event_id FROM erp_ledger WHERE store_id LIKE ?", (prefix + "%",)
            )
        except Exception as exc:  # not migrated yet
            if "no such table" in str(exc) or "does not exist" in str(exc):
                return 0
            raise
        finally:
            db.close()
        return sum(1 for (event_id,) in found if str(event_id) not in gone)

    killed, live = process("killed", killed_url), process("live", postgres_url)
    load = asyncio.create_task(simulator.run(duration=20))
    try:
        await asyncio.to_thread(live.start)  # reads as the tills sell, never stopped
        seen = 0
        for _ in range(KILLS):  # each life applies some more, then dies mid-stream
            await asyncio.to_thread(killed.start)
            await wait_until(
                lambda n=seen: rows(killed_url, set()) > n + 300, what="more ledger rows"
            )
            await asyncio.to_thread(killed.kill)
            seen = rows(killed_url, set())
        await load
    except BaseException:
        live.kill()
        raise
    finally:
        await producer.stop()
    sent = sink.sent
    gone = voided(sent)
    voids = sum(1 for e, _ in sent if e == "sale_void")
    want_rows = sum(  # a ledger row per stock line (no deposits) and per movement
        sum(ln["stock_item"] for ln in r["lines"]) if e == "sale" else 1
        for e, r in sent
        if e in ERP_READS and str(r["event_id"]) not in gone
    )
    assert late_counts(sent) > 0, "no count was posted after later sales: nothing tested"
    assert voids > 0, "no sale was post-voided: the tills void now and then"
    voids_read = "SELECT COUNT(*) FROM erp_voids WHERE store_id LIKE ?"
    try:
        await asyncio.to_thread(killed.start)
        for url in (killed_url, postgres_url):
            await wait_until(
                lambda u=url: (
                    rows(u, gone) == want_rows and scalar(u, voids_read, (prefix + "%",)) == voids
                ),
                timeout=120,
                what="all rows and post-voids",
            )
        assert killed.stop() == 0 and live.stop() == 0
    finally:
        killed.kill()
        live.kill()
    killed_stock, killed_ledger = snapshot(killed_url, prefix, gone)
    live_stock, live_ledger = snapshot(postgres_url, prefix, gone)
    assert len(killed_ledger) == want_rows
    assert killed_stock == live_stock
    assert killed_ledger == live_ledger
    want = expected_stock(sent)
    assert killed_stock == want
    assert {Decimal(v) for v in want.values()} != {Decimal(0)}
