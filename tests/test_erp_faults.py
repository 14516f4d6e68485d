"""The ERP service killed with SIGKILL mid-stream, twice, and restarted: the ledger and stock
on hand end exactly as the events say, nothing missing and nothing applied twice."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.consumer_support import ConsumerProcess, publish, scalar, wait_until
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.dev.samples import sample_sale, sample_stock_movement

SIGN = {"SALE": -1, "RETURN": 1, "VOID": 1}


def _events(prefix: str, seed: int) -> tuple[list[tuple[str, dict[str, Any]]], dict[Any, Decimal]]:
    """Seeded sales and deliveries, and the stock on hand they must leave."""
    rng = random.Random(seed)
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(900):
        store = f"{prefix}{i % 5}"
        if i % 4 == 0:
            move = sample_stock_movement(store)
            move["quantity"] = Decimal(rng.randint(1, 40))
            expected[(store, move["sku"])] += move["quantity"]
            events.append(("stock_movement", move))
        sale = sample_sale(store, customer=None)
        for line in sale["lines"]:
            line["quantity"] = Decimal(rng.randint(1, 3000)) / 1000
            expected[(store, line["sku"])] += SIGN[line["kind"]] * line["quantity"]
        events.append(("sale", sale))
    return events, expected


async def test_erp_killed_twice_mid_stream_ends_exact(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    prefix = f"E{uuid.uuid4().hex[:6]}-"
    events, expected = _events(prefix, seed=7)
    ledger_rows = sum(len(r["lines"]) if e == "sale" else 1 for e, r in events)
    await publish(kafka_topics, codec, events)
    url = f"sqlite:///{tmp_path / 'erp.db'}"
    process = ConsumerProcess(
        "erp",
        kafka_topics.kafka_bootstrap_servers,
        url,
        tmp_path / "erp",
        env={"TILLSTREAM_CONSUMER_BATCH_SIZE": "50"},
        args=["--group", f"erp-{uuid.uuid4().hex[:8]}"],
    )

    def rows() -> int:
        count = "SELECT COUNT(*) FROM erp_ledger WHERE store_id LIKE ?"
        return int(scalar(url, count, (prefix + "%",)) or 0)

    for kill_after in (600, 1800):
        process.start()
        await wait_until(lambda k=kill_after: rows() >= k, what=f"{kill_after} ledger rows")
        process.kill()
    process.start()
    try:
        await wait_until(lambda: rows() >= ledger_rows, what="the whole ledger")
        assert process.stop() == 0
    finally:
        process.kill()
    assert rows() == ledger_rows
    got = {
        (store, sku): Decimal(on_hand) / 1000
        for store, sku, on_hand in _fetch(
            url, "SELECT store_id, sku, on_hand FROM erp_stock WHERE store_id LIKE ?", prefix
        )
    }
    assert got == dict(expected)


def _fetch(url: str, sql: str, prefix: str) -> list[tuple[Any, ...]]:
    from tillstream_consumers.runtime.db import Database

    db = Database(url)
    try:
        return db.fetchall(sql, (prefix + "%",))
    finally:
        db.close()
