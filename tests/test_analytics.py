"""Analytics: rollups per store business day and local hour, gauges and the daily report
(with the sales audit's payment findings, which analytics no longer computes itself).

Through the real Applier on DuckDB and a real PostgreSQL, and once end to end over Kafka.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

from tests.consumer_support import publish, running, scalar, wait_until
from tillstream.cli import main
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.dev.ports import free_port
from tillstream.dev.samples import sample_payment, sample_sale, with_totals
from tillstream_consumers.analytics import Analytics, daily_summary
from tillstream_consumers.analytics import gauges as business_gauges
from tillstream_consumers.audit import SalesAudit
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.testing import ConsumerHarness

DAY = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture(params=["duckdb", "sqlite", "postgresql"])
def an_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh analytics store: embedded DuckDB, SQLite and a real PostgreSQL."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'a.duckdb'}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'a.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


class Feed(ConsumerHarness):
    """Events through the real codec and Applier, called as ``feed(("sale", record), ...)``."""

    def __init__(self, db_url: str, codec: AvroCodec, consumer: Analytics | None = None) -> None:
        super().__init__(
            consumer or Analytics(Settings()),
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


def sale(
    store: str,
    at: datetime,
    lines: list[tuple[str, str, str, str]] | None = None,
    *,
    day: date | None = None,
    offset: int = 60,
) -> Any:
    """The sample sale (net 2.08: milk 2 x 1.19, apples 0.734 kg = 2.19, bread 2.49 returned),
    or one of ``(kind, sku, quantity, unit price)`` lines; on business ``day`` (default the
    UTC date of ``at``) at a store ``offset`` minutes from UTC (default +01:00)."""
    value = sample_sale(store, at=at, customer=None)
    value["business_day"] = day or at.date()
    value["utc_offset_minutes"] = offset
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
        with_totals(value)
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
    """Three sales and their payments on DAY: 09:10, 09:40 and 11:05 UTC (10:10, 10:40 and
    12:05 at the store, UTC+01:00)."""
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
        ("2026-03-02T10:00+01:00", 2, 4734, 170800, 4, 1),
        ("2026-03-02T12:00+01:00", 1, 1734, 20800, 3, 1),
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


def test_a_store_east_and_one_west_of_utc_each_see_one_trading_day(feed: Feed) -> None:
    """Regression (issue 14): grouped by UTC day, a store at UTC+05:30 opening at 04:00 and
    one at UTC-05:00 trading past its midnight each saw their day split in two."""
    business_day = date(2026, 3, 2)
    east, west = f"E-{uuid.uuid4().hex[:6]}", f"W-{uuid.uuid4().hex[:6]}"
    east_local = [(4, 10), (5, 50), (6, 15), (9, 0)]  # 22:40 UTC the day before .. 03:30
    west_local = [(17, 30), (18, 45), (23, 50), (24, 30)]  # 22:30 UTC .. 05:30 the day after
    days = {east: (330, east_local), west: (-300, west_local)}
    for store, (offset, local) in days.items():
        midnight = datetime(2026, 3, 2, tzinfo=UTC) - timedelta(minutes=offset)  # local 00:00
        sales = [
            sale(store, midnight + timedelta(hours=h, minutes=m), day=business_day, offset=offset)
            for h, m in local
        ]
        feed(*sales)
        feed(*(payment(s, "2.08") for s in sales))

    for store, (offset, local) in days.items():
        s = daily_summary(feed.db, store, "2026-03-02")
        assert s.transactions == 4, store
        assert s.net == {"EUR": Decimal("8.32")}
        assert [(t.method, t.amount, t.payments) for t in s.tenders] == [
            ("CARD", Decimal("8.32"), 4)
        ]
        assert s.top_skus[0].units == Decimal(8)  # milk, 2 a receipt
        suffix = "+05:30" if offset > 0 else "-05:00"
        hours = [f"2026-03-0{2 + h // 24}T{h % 24:02d}:00{suffix}" for h, _ in local]
        assert [h.hour_start for h in s.hours] == hours
        for other in ("2026-03-01", "2026-03-03"):
            empty = daily_summary(feed.db, store, other)
            assert (empty.transactions, empty.tenders, empty.top_skus) == (0, [], []), other


def test_payments_count_on_their_sales_business_day_whichever_comes_first(feed: Feed) -> None:
    store = f"S-{uuid.uuid4().hex[:8]}"
    # Rung up at 23:50 on the 2nd at the store (UTC-05:00), paid at 04:50:05 UTC on the 3rd.
    at = datetime(2026, 3, 3, 4, 50, tzinfo=UTC)
    early = sale(store, at, day=date(2026, 3, 2), offset=-300)  # its payment arrives first
    on_time = sale(store, at, day=date(2026, 3, 2), offset=-300)
    orphan_of = sale(store, at, day=date(2026, 3, 2), offset=-300)  # its sale never comes
    feed(payment(early, "2.08"), payment(orphan_of, "2.08"))
    assert daily_summary(feed.db, store, "2026-03-02").tenders == []
    feed(early, on_time, payment(on_time, "2.08", "CASH"))
    tenders = daily_summary(feed.db, store, "2026-03-02").tenders
    assert [(t.method, t.amount, t.payments) for t in tenders] == [
        ("CARD", Decimal("2.08"), 1),
        ("CASH", Decimal("2.08"), 1),
    ]
    assert daily_summary(feed.db, store, "2026-03-03").tenders == []
    # The reconciliation is the audit's: analytics keeps no flags of its own.
    tables = _tables(feed.db)
    assert "an_flags" not in tables and "an_reconcile" not in tables
    assert "an_sales_hourly" in tables


def _tables(db: Database) -> set[str]:
    if db.dialect == "sqlite":
        return {
            str(t) for (t,) in db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    return {
        str(t).lower()
        for (t,) in db.fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE ?", ("an_%",)
        )
    }


def test_tables_of_utc_days_are_migrated_with_their_rows(an_url: str, codec: AvroCodec) -> None:
    """A store kept before issue 14: its rows stay (their UTC day as the business day, their
    UTC hour marked Z), the reconciliation tables go, and new sales land beside them."""
    from tillstream_consumers.analytics.tables import MIGRATIONS

    store = f"S-{uuid.uuid4().hex[:8]}"
    db = Database(an_url)
    db.migrate("analytics", MIGRATIONS[:1])
    with db.transaction():
        db.execute(
            "INSERT INTO an_sales_hourly VALUES (?, '2026-03-01T09:00Z', '2026-03-01', 'EUR', "
            "2, 3000, 50000, 4, 0)",
            (store,),
        )
        db.execute(
            "INSERT INTO an_reconcile VALUES ('sale-1', ?, 'EUR', '2026-03-01T09:10:00.000000Z', "
            "20800, 0, 0, NULL)",
            (store,),
        )
    db.close()
    feed = Feed(an_url, codec)  # migrates to the latest
    s1 = sale(store, datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    feed(s1)
    s = daily_summary(feed.db, store, "2026-03-01")
    assert [(h.hour_start, h.transactions) for h in s.hours] == [
        ("2026-03-01T09:00Z", 2),
        ("2026-03-01T10:00+01:00", 1),
    ]
    assert feed.db.fetchall("SELECT sale_day FROM an_sale_days WHERE sale_event_id = 'sale-1'") == [
        ("2026-03-01",)
    ]
    assert not {"an_flags", "an_reconcile"} & _tables(feed.db)
    feed.db.close()


def _gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_gauges_come_from_the_database(an_url: str, codec: AvroCodec) -> None:
    now = datetime.now(UTC)
    at = max(now - timedelta(minutes=10), now.replace(hour=0, minute=0, second=0, microsecond=0))
    store = f"S-{uuid.uuid4().hex[:8]}"
    feed = Feed(an_url, codec)
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
    method = _gauge("tillstream_business_payment_amount", method="MOBILE", currency="EUR")
    assert method is not None and method >= 1.0  # summed over every store of today
    feed.db.close()

    # A new instance on the same store (a restart, or a scaled-out peer) shows the same.
    business_gauges.TRANSACTIONS.remove(store)
    again = Feed(an_url, codec)
    again.consumer.refresh(again.db)
    assert _gauge("tillstream_business_transactions", store=store) == 2
    # A store's current business day is its latest within a day of the UTC date: two days
    # on, today's store is gone from the gauge rather than frozen.
    business_gauges.update(again.db, now + timedelta(days=1))
    assert _gauge("tillstream_business_transactions", store=store) == 2
    business_gauges.update(again.db, now + timedelta(days=2))
    assert _gauge("tillstream_business_transactions", store=store) is None
    again.db.close()


def test_report_command(an_url: str, codec: AvroCodec, tmp_path: Path) -> None:
    feed = Feed(an_url, codec)
    store = _store_day(feed)
    orphan = sale(store, DAY.replace(hour=10))
    feed(payment(orphan, "3.00"))
    feed.db.close()
    # The audit reads the same events into its own database; the report asks it.
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
    audit = ConsumerHarness(SalesAudit(Settings()), audit_url, codec=codec)
    s1, s3 = sale(store, DAY.replace(hour=9, minute=10)), sale(store, DAY.replace(hour=11))
    audit.apply_events(s1, payment(s1, "2.00"), s3, payment(s3, "2.08"), payment(orphan, "3.00"))
    audit.db.close()

    report = ["report", "--store", store, "--day", "2026-03-02", "--db", an_url]
    result = CliRunner().invoke(main, [*report, "--audit-db", audit_url])
    assert result.exit_code == 0, result.output
    out = result.output
    print(out)
    assert f"Store {store} — business day 2026-03-02" in out
    assert "transactions   3" in out
    assert "net sales      19.16 EUR" in out
    assert "returns rate   28.6% of lines" in out
    assert "10:00      17.08 EUR    2 tx " + "█" * 30 in out  # store-local hours
    assert "12:00       2.08 EUR    1 tx ███" in out
    assert "CASH                15.00 EUR    2 payment(s)" in out
    assert "1. SKU-COFFEE" in out
    assert "open flag(s)" in out and "Sales audit (store-day" in out
    assert "payment_mismatch" in out and "payments come to 2.00" in out
    assert (
        f"payment_without_sale  till T01: payments of 3.00 EUR for sale {orphan[1]['event_id']}"
        in out
    )

    # No audit named, or none answering: the rest of the report, and why the findings lack.
    alone = CliRunner().invoke(main, report)
    assert alone.exit_code == 0, alone.output
    assert "transactions   3" in alone.output
    assert "Sales audit: not shown: no sales audit to ask: pass --audit-api" in alone.output
    away = f"http://127.0.0.1:{free_port()}"
    gone = CliRunner().invoke(main, [*report, "--audit-api", away])
    assert gone.exit_code == 0, gone.output
    assert f"not shown: the sales audit is not reachable: no service answers at {away}" in (
        gone.output
    )

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
    cfg = kafka_topics
    group = type("An", (Analytics,), {"name": f"analytics-{uuid.uuid4().hex[:8]}"})
    s1 = sale(store, now)
    lonely = sale(store, now)  # its payment comes first, its sale later
    await publish(
        kafka_topics,
        codec,
        [s1, payment(s1, "2.08"), payment(lonely, "2.08"), reorder(store, "SKU-A", now)],
    )
    tx = "SELECT SUM(transactions) FROM an_sales_hourly WHERE store_id = ?"
    paid = "SELECT SUM(payments) FROM an_tenders WHERE store_id = ?"
    async with running(group(cfg), cfg, url):
        # The group starts at the beginning of the shared topics: allow for their backlog.
        await wait_until(lambda: scalar(url, tx, (store,)) == 1, timeout=200, what="the sale")
        await wait_until(lambda: scalar(url, paid, (store,)) == 1, what="its payment")
        await wait_until(
            lambda: _gauge("tillstream_business_transactions", store=store) == 1,
            what="the transactions gauge",
        )
        # The payment that came before its sale counts on the sale's day once the sale comes.
        await publish(kafka_topics, codec, [lonely])
        await wait_until(lambda: scalar(url, paid, (store,)) == 2, what="the waiting payment")
