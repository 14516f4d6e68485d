"""Analytics: rollups, reconciliation, gauges and the daily report.

Through the real Applier on DuckDB and a real PostgreSQL, and once end to end over Kafka.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

from tests.consumer_support import publish, running, scalar, wait_until
from tillstream.cli import main
from tillstream.core import rules
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.dev.samples import sample_payment, sample_sale
from tillstream_consumers.analytics import Analytics, daily_summary, reconcile
from tillstream_consumers.analytics import gauges as business_gauges
from tillstream_consumers.runtime.testing import ConsumerHarness

DAY = datetime(2026, 3, 2, tzinfo=UTC)
GRACE = 300


@pytest.fixture(params=["duckdb", "postgresql"])
def an_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh analytics store: embedded DuckDB and a real PostgreSQL."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'a.duckdb'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


class Feed(ConsumerHarness):
    """Events through the real codec and Applier, called as ``feed(("sale", record), ...)``."""

    def __init__(self, db_url: str, codec: AvroCodec, consumer: Analytics | None = None) -> None:
        super().__init__(
            consumer or Analytics(Settings(analytics_reconcile_grace_seconds=GRACE)),
            db_url,
            codec=codec,
        )

    def __call__(self, *events: tuple[str, dict[str, Any]]) -> None:
        self.apply_events(*events)


@pytest.fixture
def feed(an_url: str, codec: AvroCodec) -> Iterator[Feed]:
    f = Feed(an_url, codec)
    yield f
    f.db.close()


def sale(store: str, at: datetime, lines: list[tuple[str, str, str, str]] | None = None) -> Any:
    """The sample sale (net 2.08: milk 2 x 1.19, apples 0.734 kg = 2.19, bread 2.49 returned),
    or one of ``(kind, sku, quantity, unit price)`` lines."""
    value = sample_sale(store, at=at, customer=None)
    if lines is not None:
        value["lines"] = [
            {
                **value["lines"][0],
                "line_number": n,
                "kind": kind,
                "sku": sku,
                "gtin": None,
                "quantity": Decimal(qty),
                "unit_price": Decimal(price),
                "extended_amount": Decimal(qty) * Decimal(price),
            }
            for n, (kind, sku, qty, price) in enumerate(lines, start=1)
        ]
        net = sum(
            (ln["extended_amount"] * rules.LINE_SIGNS[ln["kind"]] for ln in value["lines"]),
            Decimal(0),
        )
        value["totals"] = {**value["totals"], "gross_amount": net, "net_amount": net}
    return "sale", value


def payment(
    of: tuple[str, dict[str, Any]], amount: str, method: str = "CARD", status: str = "CAPTURED"
) -> Any:
    value = sample_payment(of[1])
    value.update(method=method, status=status, amount=Decimal(amount))
    if method != "CARD":
        value["card"] = None
    return "payment", value


def reorder(store: str, sku: str, at: datetime) -> Any:
    return "reorder_suggestion", {
        "event_id": str(uuid.uuid4()),
        "store_id": store,
        "sku": sku,
        "on_hand": Decimal(2),
        "reorder_point": Decimal(5),
        "suggested_quantity": Decimal(24),
        "basis": "STATIC",
        "lead_time_days": 3,
        "trigger_event_id": str(uuid.uuid4()),
        "occurred_at": at,
    }


def _store_day(feed: Feed) -> str:
    """Three sales and their payments on DAY: 09:10, 09:40 and 11:05 UTC."""
    store = f"S-{uuid.uuid4().hex[:8]}"
    s1 = sale(store, DAY.replace(hour=9, minute=10))
    s2 = sale(
        store,
        DAY.replace(hour=9, minute=40),
        [
            ("SALE", "SKU-COFFEE", "3", "5.00"),
            ("SALE", "SKU-TEA", "1", "2.00"),
            ("VOID", "SKU-TEA", "1", "2.00"),  # cancels the tea: in no units, money or line
        ],
    )
    s3 = sale(store, DAY.replace(hour=11, minute=5))
    feed(s1, payment(s1, "2.08"), s2)
    feed(
        payment(s2, "20.00", "CASH"),
        payment(s2, "5.00", "CASH", "REFUNDED"),  # change given back
        s3,
        payment(s3, "2.08", status="DECLINED"),  # moves no money
        payment(s3, "2.08"),
    )
    return store


def test_hourly_sales_tenders_top_skus_and_returns_rate(feed: Feed) -> None:
    store = _store_day(feed)
    hours = feed.db.fetchall(
        "SELECT hour_start, transactions, units, net_units, lines, return_lines "
        "FROM an_sales_hourly WHERE store_id = ? ORDER BY hour_start",
        (store,),
    )
    assert hours == [
        ("2026-03-02T09:00Z", 2, 4734, 170800, 4, 1),
        ("2026-03-02T11:00Z", 1, 1734, 20800, 3, 1),
    ]
    s = daily_summary(feed.db, store, "2026-03-02")
    assert s.transactions == 3
    assert s.net == {"EUR": Decimal("19.16")}
    assert s.units == Decimal("6.468")
    assert s.average_basket == {"EUR": Decimal("6.3867")}
    assert s.units_per_basket == Decimal("2.1560")
    assert s.returns_rate == Decimal("0.2857")  # 2 return lines of 7 (a void takes its line)
    assert [(t.method, t.amount, t.payments) for t in s.tenders] == [
        ("CASH", Decimal("15.00"), 2),
        ("CARD", Decimal("4.16"), 2),
    ]
    assert [(k.sku, k.units, k.net) for k in s.top_skus] == [
        ("SKU-COFFEE", Decimal(3), Decimal("15.00")),
        ("SKU-MILK-1L", Decimal(4), Decimal("4.76")),
        ("SKU-APPLES", Decimal("1.468"), Decimal("4.38")),
        ("SKU-BREAD", Decimal(-2), Decimal("-4.98")),
    ]
    assert daily_summary(feed.db, store, "2026-03-03").transactions == 0


def test_reconciliation_flags_and_clears(feed: Feed) -> None:
    store = f"S-{uuid.uuid4().hex[:8]}"
    at = DAY.replace(hour=10)
    paid = sale(store, at)
    short = sale(store, at, [("SALE", "SKU-X", "2", "5.00")])  # 10.00
    orphan_of = sale(store, at)  # its payment comes, the sale does not (yet)
    early = sale(store, at)  # its payment arrives first
    feed(payment(early, "2.08"))
    feed(paid, payment(paid, "2.08"), short, payment(short, "6.00"), payment(orphan_of, "2.08"))
    feed(early)

    assert reconcile(feed.db, at + timedelta(seconds=GRACE - 10), GRACE) == {
        "payment_mismatch": 0,
        "payment_without_sale": 0,
    }
    later = at + timedelta(seconds=GRACE + 10)
    assert reconcile(feed.db, later, GRACE) == {"payment_mismatch": 1, "payment_without_sale": 1}
    flags = dict(feed.db.fetchall("SELECT sale_event_id, kind FROM an_flags"))
    assert flags == {
        short[1]["event_id"]: "payment_mismatch",
        orphan_of[1]["event_id"]: "payment_without_sale",
    }
    assert reconcile(feed.db, later, GRACE) == {"payment_mismatch": 1, "payment_without_sale": 1}

    flags_seen = daily_summary(feed.db, store, "2026-03-02").flags
    assert [(f.kind, f.expected, f.paid) for f in flags_seen] == [
        ("payment_mismatch", Decimal("10.00"), Decimal("6.00")),
        ("payment_without_sale", None, Decimal("2.08")),
    ]

    # The rest of the money, and the missing sale, arrive late: both flags clear.
    feed(payment(short, "4.00", "CASH"), orphan_of)
    assert reconcile(feed.db, later, GRACE) == {"payment_mismatch": 0, "payment_without_sale": 0}
    assert feed.db.fetchall("SELECT * FROM an_flags") == []
    # An over-payment is a mismatch too.
    feed(payment(paid, "1.00"))
    assert reconcile(feed.db, later, GRACE)["payment_mismatch"] == 1


def _gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_gauges_come_from_the_database(an_url: str, codec: AvroCodec) -> None:
    now = datetime.now(UTC)
    at = max(now - timedelta(minutes=10), now.replace(hour=0, minute=0, second=0, microsecond=0))
    store = f"S-{uuid.uuid4().hex[:8]}"
    feed = Feed(an_url, codec, Analytics(Settings(analytics_reconcile_grace_seconds=0)))
    s1 = sale(store, at)
    s2 = sale(store, at, [("SALE", "SKU-X", "2", "5.00")])
    feed(s1, payment(s1, "2.08"), s2, payment(s2, "10.00", "CASH"), payment(s2, "1.00", "MOBILE"))
    feed(
        reorder(store, "SKU-A", now - timedelta(hours=1)),
        reorder(store, "SKU-B", now - timedelta(hours=2)),
        reorder(store, "SKU-B", now - timedelta(hours=1)),
        reorder(store, "SKU-C", now - timedelta(hours=30)),  # older than a day
    )
    feed.consumer.refresh(feed.db)
    assert _gauge("tillstream_business_sales_amount", store=store, currency="EUR") == 12.08
    assert _gauge("tillstream_business_transactions", store=store) == 2
    assert _gauge("tillstream_business_low_stock_skus") == 2
    assert _gauge("tillstream_reconciliation_flags", kind="payment_mismatch") == 1
    assert _gauge("tillstream_reconciliation_flags", kind="payment_without_sale") == 0
    method = _gauge("tillstream_business_payment_amount", method="MOBILE", currency="EUR")
    assert method is not None and method >= 1.0  # summed over every store of today
    feed.db.close()

    # A new instance on the same store (a restart, or a scaled-out peer) shows the same.
    business_gauges.TRANSACTIONS.remove(store)
    again = Feed(an_url, codec)
    again.consumer.refresh(again.db)
    assert _gauge("tillstream_business_transactions", store=store) == 2
    # Tomorrow, today's store is gone from the gauge rather than frozen.
    business_gauges.update(again.db, now + timedelta(days=1))
    assert _gauge("tillstream_business_transactions", store=store) is None
    again.db.close()


def test_report_command(an_url: str, codec: AvroCodec) -> None:
    feed = Feed(an_url, codec)
    store = _store_day(feed)
    orphan = sale(store, DAY.replace(hour=12))
    feed(payment(orphan, "3.00"))
    reconcile(feed.db, DAY + timedelta(days=1), GRACE)
    feed.db.close()

    result = CliRunner().invoke(
        main, ["report", "--store", store, "--day", "2026-03-02", "--db", an_url]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    print(out)
    assert f"Store {store} — 2026-03-02" in out
    assert "transactions   3" in out
    assert "net sales      19.16 EUR" in out
    assert "returns rate   28.6% of lines" in out
    assert "09:00      17.08 EUR    2 tx " + "█" * 30 in out
    assert "11:00       2.08 EUR    1 tx ███" in out
    assert "CASH                15.00 EUR    2 payment(s)" in out
    assert "1. SKU-COFFEE" in out
    assert "Reconciliation: 1 flag(s)" in out
    assert f"payment_without_sale  sale {orphan[1]['event_id']}" in out

    missing = CliRunner().invoke(
        main, ["report", "--store", store, "--db", "duckdb:///" + "/nonexistent/x/a.duckdb"]
    )
    assert missing.exit_code != 0


async def test_end_to_end_over_kafka(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = f"S-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    url = f"duckdb:///{tmp_path / 'a.duckdb'}"
    cfg = kafka_topics.model_copy(update={"analytics_reconcile_grace_seconds": 0})
    group = type("An", (Analytics,), {"name": f"analytics-{uuid.uuid4().hex[:8]}"})
    s1 = sale(store, now)
    lonely = sale(store, now)
    await publish(
        kafka_topics,
        codec,
        [s1, payment(s1, "2.08"), payment(lonely, "2.08"), reorder(store, "SKU-A", now)],
    )
    tx = "SELECT SUM(transactions) FROM an_sales_hourly WHERE store_id = ?"
    flag = "SELECT kind FROM an_flags WHERE sale_event_id = ?"
    async with running(group(cfg), cfg, url):
        # The group starts at the beginning of the shared topics: allow for their backlog.
        await wait_until(lambda: scalar(url, tx, (store,)) == 1, timeout=200, what="the sale")
        # refresh() runs every couple of seconds in the service and flags the orphan.
        await wait_until(
            lambda: scalar(url, flag, (lonely[1]["event_id"],)) == "payment_without_sale",
            what="the payment without sale flagged",
        )
        # Flags are recomputed on each refresh: one raised before the sale arrived goes away.
        await wait_until(
            lambda: scalar(url, flag, (s1[1]["event_id"],)) is None, what="no flag on the sale"
        )
        await wait_until(
            lambda: _gauge("tillstream_business_transactions", store=store) == 1,
            what="the transactions gauge",
        )
        await publish(kafka_topics, codec, [lonely])
        await wait_until(
            lambda: scalar(url, flag, (lonely[1]["event_id"],)) is None, what="the flag cleared"
        )
