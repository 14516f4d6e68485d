"""The independent checker: Kafka's topics, the ERP, CRM and analytics stores and the sales
audit's flags against what the plan says they must hold.

Per stage it counts *lost* (should be there and is not), *duplicated* (there more often than
it happened) and *wrong* (there, with other content). Kafka itself may carry an event twice
when an edge dies between Kafka's acknowledgement and its own bookkeeping; those copies are
*redelivered*, shown apart: the consumers must apply them once, and the stages after Kafka
are where a duplicate would do harm.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from chaos.audit import FlagKey
from chaos.expected import Expected, fingerprint
from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.kafka import make_admin, make_consumer
from tillstream.core.registry import FileRegistry
from tillstream.core.schemas import SchemaSet
from tillstream.core.settings import Settings
from tillstream.core.topics import STORE_TOPICS
from tillstream_consumers.runtime.db import Database


@dataclass
class Stage:
    name: str
    expected: int
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    redelivered: int = 0
    note: str = ""
    details: list[str] = field(default_factory=list)
    """Lines printed under the stage table (the fleet's outages, one by one)."""

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.wrong)


async def check_kafka(settings: Settings, expected: Expected) -> Stage:
    """Every store topic read from the start to its end."""
    codec = AvroCodec(FileRegistry(SchemaSet()))
    seen: Counter[str] = Counter()
    stage = Stage("kafka", expected.total)
    problems: list[str] = []
    partitions = await partitions_of(settings, [t.name for t in STORE_TOPICS])
    consumer = make_consumer(settings, group_id=None, max_poll_records=5000)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=2000, max_records=5000)
            for tp, messages in batch.items():
                for message in messages:
                    _tally(codec, message.value, expected, seen, stage, problems)
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    for ids in expected.events.values():
        stage.lost += sum(1 for event_id in ids if event_id not in seen)
    stage.redelivered = sum(n - 1 for n in seen.values() if n > 1)
    stage.note = "; ".join(problems[:3])
    return stage


def _tally(
    codec: AvroCodec,
    value: bytes,
    expected: Expected,
    seen: Counter[str],
    stage: Stage,
    problems: list[str],
) -> None:
    try:
        decoded = codec.decode(value)
    except CodecError as exc:
        stage.wrong += 1
        problems.append(f"undecodable record: {exc}")
        return
    event_id = str(decoded.record["event_id"])
    if event_id in expected.refused:
        stage.wrong += 1
        problems.append(f"event {event_id} carries a card number and reached Kafka")
        return
    want = expected.events[decoded.event].get(event_id)
    if want is None:
        stage.wrong += 1
        problems.append(f"{decoded.event} {event_id} was never sent")
    elif fingerprint(decoded.record) != want:
        stage.wrong += 1
        problems.append(f"{decoded.event} {event_id} differs from what was sent")
    seen[event_id] += 1


async def partitions_of(settings: Settings, topics: list[str]) -> list[TopicPartition]:
    """Every partition of ``topics``, as the cluster describes them."""
    admin = make_admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return sorted(
        TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
    )


async def count_dead_letters(settings: Settings) -> int:
    """Records in any ``tillstream.dlq.*`` topic: events a consumer could not apply."""
    admin = make_admin(settings)
    await admin.start()
    try:
        dlq = [t for t in await admin.list_topics() if t.startswith("tillstream.dlq.")]
    finally:
        await admin.close()
    if not dlq:
        return 0
    partitions = await partitions_of(settings, dlq)
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        await consumer.stop()


def check_erp(db: Database, expected: Expected) -> Stage:
    stage = Stage("erp", len(expected.ledger) + len(expected.voids))
    found = {
        str(event_id): (int(rows), int(change))
        for event_id, rows, change in db.fetchall(
            "SELECT event_id, COUNT(*), SUM(qty_change) FROM erp_ledger GROUP BY event_id"
        )
    }
    for event_id, want in expected.ledger.items():
        got = found.pop(event_id, None)
        if got is None:
            stage.lost += 1
        elif got != want:
            stage.wrong += 1
    # A voided sale read before its post-void has its rows and the post-void's opposite
    # ones; one read after it, neither.
    for sale_id, (rows, change) in expected.voided_ledger.items():
        void_id = expected.voids[sale_id][1]
        both = (found.pop(sale_id, None), found.pop(void_id, None))
        if both != (None, None) and both != ((rows, change), (rows, -change)):
            stage.wrong += 1
    stage.wrong += len(found)  # ledger entries of events that never happened
    _voids_recorded(db, "erp_voids", expected, stage)
    stock = _rows(db, "SELECT store_id, sku, on_hand FROM erp_stock", 2)
    sold = _rows(db, "SELECT store_id, sku, sales_day, units FROM erp_daily_sales", 3)
    bad_stock = _differences(expected.on_hand, stock)
    bad_sold = _differences(expected.daily_sold, sold)
    stage.wrong += bad_stock + bad_sold
    stage.note = f"{len(stock)} stock levels ({bad_stock} off), {len(sold)} daily sales rows"
    return stage


def check_crm(db: Database, expected: Expected) -> Stage:
    stage = Stage("crm", sum(expected.visits.values()))
    profiles = {
        str(c): (int(v), int(p))
        for c, v, p in db.fetchall("SELECT customer_id, visits, points FROM crm_profiles")
    }
    for customer in set(expected.visits) | set(profiles):
        want = expected.visits.get(customer, 0)
        got, points = profiles.get(customer, (0, 0))
        _count(stage, want, got)
        if got == want and points != expected.points.get(customer, 0):
            stage.wrong += 1
    spend = _rows(db, "SELECT customer_id, currency, visits, net_units FROM crm_spend", 2)
    visits = _rows(db, "SELECT customer_id, store_id, visits FROM crm_store_visits", 2)
    stage.wrong += _differences(expected.spend, spend) + _differences(expected.store_visits, visits)
    _voids_recorded(db, "crm_voids", expected, stage)
    stage.note = f"{len(profiles)} profiles"
    return stage


def check_analytics(db: Database, expected: Expected) -> Stage:
    """Rollups per store business day and local hour; payments on their sale's day, or
    waiting for a sale that never came. (The sale/payment reconciliation is the audit's.)"""
    payments = sum(p for _, p in expected.tenders.values())
    payments += sum(p for _, p in expected.unplaced.values())
    sales = sum(h[0] for h in expected.hourly.values())
    stage = Stage("analytics", sales + payments)
    hourly = _rows(
        db,
        "SELECT store_id, sale_day, hour_start, currency, transactions, units, net_units, "
        "lines, return_lines FROM an_sales_hourly",
        4,
    )
    tenders = _rows(
        db,
        "SELECT store_id, sale_day, method, currency, amount_units, payments FROM an_tenders",
        4,
    )
    for key in set(expected.hourly) | set(hourly):
        want, got = expected.hourly.get(key, [0] * 5), list(hourly.get(key, [0] * 5))
        _count(stage, want[0], got[0])
        stage.wrong += want[0] == got[0] and want != got
    unplaced = _rows(
        db,
        "SELECT store_id, method, currency, SUM(amount_units), SUM(payments) "
        "FROM an_unplaced_payments GROUP BY store_id, method, currency",
        3,
    )
    for want_rows, got_rows in ((expected.tenders, tenders), (expected.unplaced, unplaced)):
        for key in set(want_rows) | set(got_rows):
            want, got = want_rows.get(key, [0, 0]), list(got_rows.get(key, [0, 0]))
            _count(stage, want[1], got[1])
            stage.wrong += want[1] == got[1] and want != got
    skus = _rows(
        db, "SELECT store_id, sale_day, sku, currency, units, net_units FROM an_sku_daily", 4
    )
    stage.wrong += _differences(expected.sku_daily, skus)
    _voids_recorded(db, "an_voids", expected, stage)
    stage.note = (
        f"{len(hourly)} hourly rows, {len(tenders)} tender rows, {len(skus)} SKU rows, "
        f"{sum(p for _, p in unplaced.values())} payment(s) waiting for their sale"
    )
    return stage


def check_audit(db: Database, planted: Mapping[FlagKey, int | None], expected: Expected) -> Stage:
    """The audit's open flags must be exactly the planted ones: a planted flag absent is
    *lost*; a flag nobody planted (a false gap, a false shortage...) or a planted one with
    another amount is *wrong*. Its post-voids per till (count and amount) must be the
    plan's."""
    stage = Stage("audit", len(planted) + len(expected.voids))
    found: dict[FlagKey, int | None] = {}
    for kind, store, day, till, subject, amount in db.fetchall(
        "SELECT kind, store_id, business_day, terminal_id, subject, amount FROM audit_flags "
        "WHERE is_open = 1"
    ):
        key = (str(kind), str(store), str(day), str(till or ""), str(subject))
        found[key] = None if amount is None else int(amount)
    false: list[str] = []
    for key, amount in planted.items():
        if key not in found:
            stage.lost += 1
            false.append(f"missing {key[0]} {key[1]} {key[4]}")
        elif found[key] != amount:
            stage.wrong += 1
            false.append(f"{key[0]} {key[1]} {key[4]}: {found[key]} not {amount}")
    for key in found.keys() - planted.keys():
        stage.wrong += 1
        false.append(f"false {key[0]} {key[1]} {key[4]}")
    voided = _rows(
        db,
        "SELECT store_id, business_day, terminal_id, COUNT(*), SUM(amount) FROM audit_voids "
        "GROUP BY store_id, business_day, terminal_id",
        3,
    )
    planned: dict[tuple[str, ...], list[int]] = {k: v for k, v in expected.void_totals.items()}
    for till in set(planned) | set(voided):
        want, got = planned.get(till, [0, 0]), list(voided.get(till, [0, 0]))
        _count(stage, want[0], got[0])
        stage.wrong += want[0] == got[0] and want != got
    kinds = Counter(key[0] for key in found)
    stage.note = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "no flags"
    stage.note += f"; {sum(n for n, _ in voided.values())} post-voids"
    if false:
        stage.note += "; " + "; ".join(sorted(false)[:3])
    return stage


def _voids_recorded(db: Database, table: str, expected: Expected, stage: Stage) -> None:
    """Each planned post-void's sale recorded as voided once (a service that never read a
    post-void lost it; one of a sale nobody voided is wrong)."""
    found = {
        (str(s), str(i)) for s, i in db.fetchall(f"SELECT store_id, voided_event_id FROM {table}")
    }
    want = {(store, sale_id) for sale_id, (store, _) in expected.voids.items()}
    stage.lost += len(want - found)
    stage.wrong += len(found - want)


def _count(stage: Stage, want: int, got: int) -> None:
    """An effect counted more often than it happened is duplicated; less often, lost."""
    stage.duplicated += max(0, got - want)
    stage.lost += max(0, want - got)


def _rows(db: Database, sql: str, keys: int) -> dict[tuple[str, ...], Any]:
    """Rows keyed by their first ``keys`` columns; the value is the one column after them,
    or the list of them."""
    out: dict[tuple[str, ...], Any] = {}
    for row in db.fetchall(sql):
        values = [int(v) for v in row[keys:]]
        out[tuple(str(v) for v in row[:keys])] = values[0] if len(values) == 1 else values
    return out


def _differences(want: Mapping[Any, Any], got: Mapping[Any, Any]) -> int:
    """Keys whose values differ (a key on one side only counts, unless its value is zero)."""
    bad = 0
    for key in set(want) | set(got):
        w, g = want.get(key), got.get(key)
        if _zero(w) and _zero(g):
            continue
        bad += _normal(w) != _normal(g)
    return bad


def _zero(value: Any) -> bool:
    return value is None or value == 0 or (isinstance(value, Sequence) and not any(value))


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, Iterable) and not isinstance(value, str) else value
