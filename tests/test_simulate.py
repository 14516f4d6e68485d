"""The store simulator: reproducible, valid for the edge, POSLog that converts back, and
``tillstream simulate`` publishing exactly what it says."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from tillstream.core import rules
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_consumer
from tillstream.core.records import jsonable
from tillstream.core.settings import Settings
from tillstream.core.topics import EVENT_TOPICS
from tillstream.dev.processes import run_tillstream
from tillstream.simulate.catalog import CATALOG
from tillstream.simulate.driver import Simulator
from tillstream.simulate.poslog import poslog
from tillstream.simulate.shopper import StoreTraffic
from tillstream_consumers.audit import SalesAudit, queries
from tillstream_consumers.audit.reading import HOLD_SECONDS
from tillstream_consumers.runtime.testing import ConsumerHarness
from tillstream_edge.models import EVENT_LIST, ONE_EVENT
from tillstream_edge.poslog import parse_poslog

AT = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)


def _receipts(seed: int, n: int = 300) -> list[dict[str, object]]:
    traffic = StoreTraffic("S001", random.Random(seed), bad_ratio=0.05, stock_limited=False)
    return [
        {"bad": tx.bad, "events": tx.events}
        for tx in (traffic.transaction(i % 3, AT) for i in range(n))
    ]


def test_a_seed_decides_the_traffic_exactly() -> None:
    assert _receipts(7) == _receipts(7)
    assert _receipts(7) != _receipts(8)


def test_receipts_are_valid_for_the_edge_and_bad_ones_are_refused(codec: AvroCodec) -> None:
    kinds: set[str] = set()
    deposits: set[str] = set()
    methods: set[str] = set()
    bad = 0
    for receipt in _receipts(3, 600):
        for event, record in receipt["events"]:  # type: ignore[attr-defined]
            payload = {"type": event, **jsonable(record)}
            if receipt["bad"] and event == "sale":
                with pytest.raises(ValidationError, match="card number"):
                    ONE_EVENT.validate_python(payload)
                bad += 1
                continue
            ONE_EVENT.validate_python(payload)
            codec.encode(event, record)
            if event == "sale":
                kinds.update(line["kind"] for line in record["lines"])
                deposits.update(ln["kind"] for ln in record["lines"] if not ln["stock_item"])
                for i, ln in enumerate(record["lines"]):
                    if not ln["stock_item"]:  # a deposit follows its drink, kind for kind
                        before = record["lines"][:i]  # (a voided drink's VOID between)
                        assert any(d["kind"] == ln["kind"] and d["stock_item"] for d in before)
                lines = record["lines"]
                sign = {"SALE": 1, "RETURN": -1, "VOID": -1}
                total = sum(ln["extended_amount"] * sign[ln["kind"]] for ln in lines)
                assert record["totals"]["net_amount"] == total
            else:
                methods.add(record["method"])
    assert kinds == {"SALE", "RETURN", "VOID"}
    assert "SALE" in deposits  # bottle deposits: money, not stock
    assert {"CASH", "CARD", "MOBILE"} <= methods
    assert bad > 0


def test_poslog_receipts_convert_back_to_the_same_sale() -> None:
    traffic = StoreTraffic("S001", random.Random(11), stock_limited=False)
    for i in range(200):
        tx = traffic.transaction(i % 3, AT)
        events = parse_poslog(poslog(tx)).events
        (sale,) = [record for event, record in events if event == "sale"]
        assert sale["store_id"] == "S001"
        assert sale["totals"]["net_amount"] == tx.sale["totals"]["net_amount"]
        assert [(ln["kind"], ln["sku"], ln["quantity"]) for ln in sale["lines"]] == [
            (ln["kind"], ln["sku"], ln["quantity"]) for ln in tx.sale["lines"]
        ]
        assert sale["customer_id"] == tx.sale["customer_id"]
        assert len(events) == len(tx.poslog_events)


def test_deliveries_keep_stock_above_the_reorder_points_and_never_below_zero() -> None:
    """At one receipt a second and a delivery every ten seconds, as the store is sized for:
    no shelf goes below zero, and few are ever at their reorder point."""
    traffic = StoreTraffic("S001", random.Random(5))
    traffic.opening_count(AT)
    low: set[str] = set()
    for i in range(3000):
        traffic.transaction(i % 3, AT)
        assert min(traffic.on_hand.values()) >= 0
        low |= {item.sku for item in CATALOG if traffic.on_hand[item.sku] <= item.reorder_point}
        if i % 10 == 9:
            traffic.delivery(AT)
    assert traffic.oversold == 0
    assert len(low) <= len(CATALOG) // 4, low  # a truck missed now and then, not the shop


def test_stock_takes_count_a_few_skus_validly(codec: AvroCodec) -> None:
    traffic = StoreTraffic("S001", random.Random(9), stock_limited=False)
    traffic.opening_count(AT)
    for i in range(400):
        traffic.transaction(i % 3, AT)
    counted: set[str] = set()
    for _ in range(20):
        counts = traffic.stock_take(AT)
        assert len(counts) == 3
        for record in counts:
            assert record["quantity_type"] == "COUNT" and record["reason"] == "COUNTED"
            assert record["quantity"] >= 0
            assert record["quantity"] == traffic.on_hand[record["sku"]]  # the store's belief
            ONE_EVENT.validate_python({"type": "stock_movement", **jsonable(record)})
            codec.encode("stock_movement", record)
            counted.add(record["sku"])
    assert len(counted) > 10  # different SKUs each time


async def test_simulate_publishes_what_it_reports(kafka_topics: Settings, codec: AvroCodec) -> None:
    prefix = f"Z{uuid.uuid4().hex[:5]}"
    done = await asyncio.to_thread(
        run_tillstream,
        "simulate", "--stores", "2", "--rate", "200", "--duration", "3", "--seed", "4",
        "--store-prefix", prefix,
        env={"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka_topics.kafka_bootstrap_servers},
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = dict(pair.split("=") for pair in done.stdout.strip().splitlines()[-1].split()[1:])
    assert int(summary["sent"]) == int(summary["accepted"]) > 100
    assert summary["refused"] == "0"  # nothing refuses a bad receipt on this path: none sent

    consumer = make_consumer(
        kafka_topics, *(t.name for t in EVENT_TOPICS.values()), group_id=f"sim-{prefix}"
    )
    await consumer.start()
    seen: set[str] = set()
    try:
        async with asyncio.timeout(60):
            while len(seen) < int(summary["sent"]):
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    for msg in batch:
                        if msg.key and msg.key.decode().startswith(prefix):
                            seen.add(str(codec.decode(msg.value).record["event_id"]))
    finally:
        await consumer.stop()
    assert len(seen) == int(summary["sent"])
    assert json.dumps(summary)  # the last line is machine-readable key=value pairs


class _Recorded:
    """The simulator's own sink interface, keeping what it was given (no Kafka here)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.problems: dict[str, str] = {}

    async def send(self, store: str, events: list[tuple[str, dict[str, Any]]]) -> str | None:
        self.events.extend(events)
        return None

    async def send_poslog(self, store: str, tx: Any) -> str | None:
        self.events.extend(tx.poslog_events)
        return None

    async def close(self) -> None:
        pass


async def test_tills_sign_on_take_pickups_and_declare_at_close(codec: AvroCodec) -> None:
    sink = _Recorded()
    simulator = Simulator(["S1", "S2"], sink, rate=2000, tills=3, seed=11, bad_ratio=0)
    await simulator.run(duration=2)
    control = [r for e, r in sink.events if e == "till_event"]
    shifts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in control:
        assert rules.event_problems("till_event", record) == []
        codec.encode("till_event", record)
        ONE_EVENT.validate_json(json.dumps({"type": "till_event", **jsonable(record)}))
        if record["terminal_id"] != "BO":  # the back office opens and closes the store-day
            shifts.setdefault((record["store_id"], record["terminal_id"]), []).append(record)
    store_days = [(r["store_id"], r["kind"]) for r in control if r["terminal_id"] == "BO"]
    assert store_days == [("S1", "STORE_DAY_OPEN"), ("S2", "STORE_DAY_OPEN"),
                          ("S1", "STORE_DAY_CLOSE"), ("S2", "STORE_DAY_CLOSE")]  # fmt: skip
    assert len(shifts) == 6
    short = 0
    for events in shifts.values():
        kinds = [r["kind"] for r in events]
        assert kinds[:2] == ["SIGN_ON", "OPENING_FLOAT"]
        assert kinds[-3:] == ["TENDER_DECLARATION", "TILL_CLOSE", "SIGN_OFF"]
        assert set(kinds[2:-3]) <= {"PICKUP"}
        declared, expected = (
            {t["tender"]: t["amount"] for t in r["tenders"]} for r in events[-3:-1]
        )
        assert declared["CARD"] == expected["CARD"]
        short += declared["CASH"] < expected["CASH"]
    assert "PICKUP" in {r["kind"] for r in control}
    # The drawer follows the cash taken: float + cash payments - pickups = expected at close,
    # but for the receipts post-voided (their cash given back).
    voided = {str(r["voided_event_id"]) for e, r in sink.events if e == "sale_void"}
    assert voided and sum(simulator.stats.post_voids.values()) == len(voided)
    for (store, till), events in shifts.items():
        cash = sum(
            (
                p["amount"] * (1 if p["status"] == "CAPTURED" else -1)
                for e, p in sink.events
                if e == "payment"
                and str(p["sale_event_id"]) not in voided
                and p["store_id"] == store
                and p["terminal_id"] == till
                and p["method"] == "CASH"
                and p["status"] in ("CAPTURED", "REFUNDED")
            ),
            Decimal(150),
        ) - sum((r["tenders"][0]["amount"] for r in events if r["kind"] == "PICKUP"), Decimal(0))
        closing = {t["tender"]: t["amount"] for t in events[-2]["tenders"]}
        assert closing["CASH"] == cash
    assert 0 < short < len(shifts)  # now and then a cashier comes out short (seeded)


class _Edge(_Recorded):
    """Like the store's edge: a request with an invalid event (a card number typed in text)
    is refused whole; POSLog documents are converted as the edge converts them."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[dict[str, Any]] = []

    async def send(self, store: str, events: list[tuple[str, dict[str, Any]]]) -> str | None:
        try:
            EVENT_LIST.validate_python([{"type": e, **jsonable(r)} for e, r in events])
        except ValidationError:
            self.refused += [r for e, r in events if e == "sale"]
            return "422 invalid"
        return await super().send(store, events)

    async def send_poslog(self, store: str, tx: Any) -> str | None:
        self.events.extend(parse_poslog(poslog(tx)).events)
        return None


def _gaps(numbers: set[str], refused: set[str]) -> set[str]:
    """The audit's subjects for runs of refused numbers between numbers that arrived
    (``T01 01-000005`` or ``T01 01-000005..01-000006``)."""
    if not numbers:
        return set()
    prefix = min(numbers).rsplit("-", 1)[0] + "-"
    seen = sorted(int(n.rsplit("-", 1)[1]) for n in numbers)
    missing = sorted(int(n.rsplit("-", 1)[1]) for n in refused)
    subjects = set()
    for low, high in itertools.pairwise(seen):
        run = [n for n in missing if low < n < high]
        if run:
            assert run == list(range(low + 1, high))  # nothing else went missing
            first, last = (f"{prefix}{n:06d}" for n in (run[0], run[-1]))
            subjects.add(first if first == last else f"{first}..{last}")
    return subjects


async def test_a_simulated_day_audits_to_exactly_the_faults_it_plants(db_url: str) -> None:
    """Store-day open and close, tills that balance but for the cashiers planted short
    (beyond the tolerance), and receipts the edge refused, whose numbers are gaps: nothing
    else. Sales and till events of a store share its business day and offset."""
    edge = _Edge()
    simulator = Simulator(["S1", "S2"], edge, rate=1500, tills=3, seed=9, bad_ratio=0.04)
    stats = await simulator.run(duration=2)
    audited = [
        (e, r) for e, r in edge.events if e in ("sale", "payment", "till_event", "sale_void")
    ]
    harness = ConsumerHarness(SalesAudit(Settings()), db_url)
    harness.apply_events(*audited)
    # A till's declaration is the last it publishes: its short waits for payments published
    # after it, none come, and the refresh flags it once the hold is over.
    later = datetime.now(UTC) + timedelta(seconds=HOLD_SECONDS + 1)
    harness.consumer.settle(harness.db, later)

    days = {(r["store_id"], r["business_day"], r["utc_offset_minutes"])
            for e, r in audited if e != "payment"}  # fmt: skip
    assert {(s, offset) for s, _, offset in days} == {("S1", 60), ("S2", 0)}
    assert len(days) == 2  # one business day a store, sales and till events alike
    kinds = [(r["store_id"], r["kind"]) for e, r in audited if e == "till_event"]
    assert kinds.count(("S1", "STORE_DAY_OPEN")) == kinds.count(("S1", "STORE_DAY_CLOSE")) == 1

    planted: set[tuple[str, str, str]] = set()
    tolerance = Settings().audit_over_short_tolerance
    for (store, till), shift in simulator.shifts.items():
        if shift.short_by > tolerance:
            planted.add((store, "over_short", f"T{till + 1:02d} CASH"))
        terminal = f"T{till + 1:02d}"
        numbered = [r for e, r in audited if e in ("sale", "sale_void")]  # a void's own too
        numbers, refused = (
            {
                r["receipt_number"]
                for r in got
                if (r["store_id"], r["terminal_id"]) == (store, terminal)
            }
            for got in (numbered, edge.refused)
        )
        planted |= {(store, "receipt_gap", f"{terminal} {g}") for g in _gaps(numbers, refused)}
    found = {
        (str(store), str(kind), str(subject))
        for store, kind, subject in harness.db.fetchall(
            "SELECT store_id, kind, subject FROM audit_flags WHERE is_open = 1"
        )
    }
    assert found == planted
    assert any(kind == "receipt_gap" for _, kind, _ in planted)  # the seed plants both
    assert any(kind == "over_short" for _, kind, _ in planted)
    assert stats.total("rejected") and sum(stats.refused_receipts.values()) == len(edge.refused)
    assert sum(stats.post_voids.values()) > 0  # post-voided sales: out of the money, no flag
    statuses = {d.store_id: d.status for d in queries.store_days(harness.db)}
    assert statuses == {
        s: "closed-unbalanced" if any(p[0] == s for p in planted) else "closed-balanced"
        for s in ("S1", "S2")
    }


def _shelves(events: list[tuple[str, dict[str, Any]]]) -> tuple[Decimal, set[tuple[str, str]]]:
    """Stock by store and SKU as head office folds the events in the order they came (counts
    set it, deliveries add, sales take, returns, voided lines and post-voids give back): the
    lowest it ever was, and the pairs that were ever at their reorder point."""
    points = {item.sku: item.reorder_point for item in CATALOG}
    sign = {"SALE": -1, "RETURN": 1, "VOID": 1}
    sales: dict[str, dict[str, Any]] = {}
    stock: dict[tuple[str, str], Decimal] = {}
    lowest, low = Decimal(0), set()
    for event, record in events:
        changes: list[tuple[str, Decimal, bool]] = []  # (sku, quantity, is a count)
        if event == "stock_movement":
            count = record["quantity_type"] == "COUNT"
            changes.append((record["sku"], record["quantity"], count))
        elif event in ("sale", "sale_void"):
            sale = record if event == "sale" else sales[str(record["voided_event_id"])]
            sales[str(sale["event_id"])] = sale
            back = 1 if event == "sale" else -1
            changes += [(ln["sku"], back * sign[ln["kind"]] * ln["quantity"], False)
                        for ln in sale["lines"] if ln["stock_item"]]  # fmt: skip
        for sku, quantity, count in changes:
            key = (record["store_id"], sku)
            stock[key] = quantity if count else stock.get(key, Decimal(0)) + quantity
            lowest = min(lowest, stock[key])
            if stock[key] <= points[sku]:
                low.add(key)
    return lowest, low


async def test_a_simulated_store_sells_only_what_it_has() -> None:
    """Over a bounded run past two deliveries, at the demo's pace per store scaled up: no
    shelf at head office goes below zero, and only a few store-SKUs reach their reorder
    point (a truck missed), as a store manager would recognise."""
    sink = _Recorded()
    simulator = Simulator(["S1", "S2"], sink, rate=400, tills=3, seed=21, bad_ratio=0)
    await simulator.run(duration=22)
    lowest, low = _shelves(sink.events)
    assert lowest >= 0
    assert all(traffic.oversold == 0 for traffic in simulator.traffic.values())
    assert len(low) <= 2 * len(CATALOG) // 5, sorted(low)
    deliveries = {r["reference"] for e, r in sink.events
                  if e == "stock_movement" and r["reason"] == "RECEIVED"}  # fmt: skip
    assert len(deliveries) >= 4  # two a store at least
