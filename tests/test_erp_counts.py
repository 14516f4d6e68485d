"""Counts in event time: stock on hand is the last count plus the changes after it, whatever
order sales and stock movements are read in (docs/erp.md, "Counts"), on SQLite and a real
PostgreSQL, for a new database and for one migrated from the arrival-order rule."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.test_erp import SETTINGS, Erp, movement
from tillstream.core.codec import AvroCodec
from tillstream.dev.samples import sample_sale, with_totals
from tillstream_consumers.erp.stock import micros
from tillstream_consumers.erp.tables import COMPONENT, MIGRATIONS
from tillstream_consumers.runtime.db import Database

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SIGN = {"SALE": -1, "RETURN": 1, "VOID": 1}


@pytest.fixture
def erp(db_url: str, codec: AvroCodec) -> Iterator[Erp]:
    e = Erp(db_url, codec, SETTINGS)
    for sku in ("A", "B"):
        e.set_item(sku, 0)  # static point 0: no suggestions in the way
    yield e
    e.db.close()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def count(
    store: str, sku: str, quantity: str, when: datetime, event_id: str | None = None
) -> dict[str, Any]:
    value = movement(store, sku, quantity, "COUNT", "COUNTED", at=when)
    if event_id is not None:
        value["event_id"] = event_id
    return value


def change(store: str, sku: str, quantity: str, when: datetime) -> dict[str, Any]:
    return movement(store, sku, quantity, at=when)


def sale(store: str, when: datetime, *lines: tuple[str, str, str]) -> dict[str, Any]:
    value = sample_sale(store, at=when)
    template = value["lines"][0]
    value["lines"] = [
        {**template, "line_number": n, "kind": kind, "sku": sku, "quantity": Decimal(q)}
        for n, (kind, sku, q) in enumerate(lines, start=1)
    ]
    return with_totals(value)


def store() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def ledger(erp: Erp, s: str) -> list[tuple[Any, ...]]:
    return erp.db.fetchall(
        "SELECT event_id, line_no, sku, qty_change, kind, counted FROM erp_ledger "
        "WHERE store_id = ? ORDER BY event_id, line_no",
        (s,),
    )


def adjustment(erp: Erp, event: dict[str, Any]) -> int:
    row = erp.db.fetchone(
        "SELECT qty_change FROM erp_ledger WHERE event_id = ?", (event["event_id"],)
    )
    assert row is not None
    return int(row[0])


# -- the documented rule, case by case --------------------------------------------------


def test_a_sale_from_before_a_count_read_after_it_does_not_move_stock(erp: Erp) -> None:
    s = store()
    counted = count(s, "A", "50", at(10))
    erp.apply(counted)
    erp.apply(sale(s, at(5), ("SALE", "A", "3")))  # rung up before the count, read after
    assert erp.on_hand(s, "A") == Decimal("50.000")
    assert adjustment(erp, counted) == 53000  # the count found 50 where the book had -3
    erp.apply(sale(s, at(20), ("SALE", "A", "2")))
    assert erp.on_hand(s, "A") == Decimal("48.000")
    assert sum(r[3] for r in ledger(erp, s)) == 48000  # the ledger sums to stock on hand


def test_a_change_at_the_instant_of_a_count_is_in_the_count(erp: Erp) -> None:
    s = store()
    erp.apply(count(s, "A", "10", at(10)))
    erp.apply(change(s, "A", "5", at(10)))  # same instant: the count saw it
    assert erp.on_hand(s, "A") == Decimal("10.000")
    erp.apply(change(s, "A", "5", at(10) + timedelta(microseconds=1)))  # after it
    assert erp.on_hand(s, "A") == Decimal("15.000")


def test_of_two_counts_at_one_instant_the_greater_event_id_wins(erp: Erp) -> None:
    s = store()
    low, high = (str(uuid.UUID(int=(n << 120) | random.getrandbits(64))) for n in (1, 2))
    erp.apply(count(s, "A", "7", at(10), high), change(s, "A", "-1", at(11)))
    erp.apply(count(s, "A", "9", at(10), low))  # read last, but the earlier of the two
    assert erp.on_hand(s, "A") == Decimal("6.000")


def test_a_count_from_before_the_last_count_corrects_the_next_ones_adjustment(
    erp: Erp,
) -> None:
    s = store()
    last = count(s, "A", "30", at(30))
    erp.apply(last)
    erp.apply(change(s, "A", "-4", at(20)))
    first = count(s, "A", "20", at(10))
    erp.apply(first)
    assert erp.on_hand(s, "A") == Decimal("30.000")
    assert adjustment(erp, first) == 20000
    assert adjustment(erp, last) == 14000  # 30 counted where 20 - 4 was expected
    assert sum(r[3] for r in ledger(erp, s)) == 30000


def test_late_changes_cost_a_few_statements_per_batch_not_round_trips_per_line(
    erp: Erp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer catching up reads one topic far ahead of the other, so most changes arrive
    after a later count: correcting the counts line by line made a PostgreSQL ERP crawl."""
    s = store()
    first, second = count(s, "A", "50", at(10)), count(s, "B", "40", at(10))
    erp.apply(first, second, count(s, "A", "60", at(100)), count(s, "B", "70", at(100)))
    late = [sale(s, at(5 + i % 80), ("SALE", "A", "1"), ("SALE", "B", "2")) for i in range(200)]
    statements = 0
    for method in ("execute", "executemany", "fetchone", "fetchall"):
        original = getattr(erp.db, method)

        def counted(*args: Any, _original: Any = original) -> Any:
            nonlocal statements
            statements += 1
            return _original(*args)

        monkeypatch.setattr(erp.db, method, counted)
    erp.apply(*late)
    monkeypatch.undo()
    assert statements < 30, f"{statements} statements for a batch of {len(late)} late sales"
    assert erp.on_hand(s, "A") == Decimal("60.000")
    assert erp.on_hand(s, "B") == Decimal("70.000")
    # the 200 sales before t=10 and t=100 are split between the two counts of each SKU
    early = sum(1 for i in range(200) if 5 + i % 80 <= 10)
    assert adjustment(erp, first) == 50000 + 1000 * early
    assert adjustment(erp, second) == 40000 + 2000 * early
    assert sum(r[3] for r in ledger(erp, s)) == 130000


# -- any read order, any batching: the same stock and the same ledger ----------------------


def _history(rng: random.Random) -> list[tuple[str, float, Any]]:
    """(kind, seconds, details) of a SKU pair's day: sales, deliveries, damage and counts,
    on few distinct instants so that ties happen."""
    out: list[tuple[str, float, Any]] = []
    for _ in range(40):
        t = float(rng.randint(0, 30))
        roll = rng.random()
        if roll < 0.5:
            lines = [("SALE", rng.choice("AB"), str(rng.randint(1, 3000) / 1000))]
            if rng.random() < 0.3:
                lines.append(("RETURN", rng.choice("AB"), "1"))
            out.append(("sale", t, lines))
        elif roll < 0.75:
            out.append(("change", t, (rng.choice("AB"), str(rng.randint(-5, 24)))))
        else:
            out.append(("count", t, (rng.choice("AB"), str(rng.randint(0, 40000) / 1000))))
    return out


def _events(s: str, history: list[tuple[str, float, Any]], variant: int) -> list[dict[str, Any]]:
    """The history as events of store ``s``; event ids keep the history's order whatever
    ``variant``, so ties between counts break the same way in every store."""
    events = []
    for rank, (kind, t, details) in enumerate(history):
        if kind == "sale":
            value = sale(s, at(t), *details)
        elif kind == "change":
            value = change(s, *details, at(t))
        else:
            value = count(s, *details, at(t))
        value["event_id"] = str(uuid.UUID(int=(rank << 64) | variant))
        events.append(value)
    return events


def _oracle(events: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """Stock on hand per SKU and each count's adjustment, by folding the events sorted into
    event time: written apart from the service, the plain way."""
    moves: dict[str, list[tuple[int, int, str, int]]] = defaultdict(list)
    for e in events:
        t = micros(e["occurred_at"])
        if "lines" in e:
            for line in e["lines"]:
                qty = int(SIGN[line["kind"]] * line["quantity"] * 1000)
                moves[line["sku"]].append((t, 0, "", qty))
        elif e["quantity_type"] == "COUNT":
            moves[e["sku"]].append((t, 1, e["event_id"], int(e["quantity"] * 1000)))
        else:
            moves[e["sku"]].append((t, 0, "", int(e["quantity"] * 1000)))
    on_hand, adjustments = {}, {}
    for sku, seq in moves.items():
        stock = 0
        for _t, is_count, event_id, qty in sorted(seq):
            if is_count:
                adjustments[event_id] = qty - stock
                stock = qty
            else:
                stock += qty
        on_hand[sku] = stock
    return on_hand, adjustments


def test_stock_and_ledger_do_not_depend_on_read_order_or_batching(erp: Erp) -> None:
    _check_read_orders(erp)


def test_duckdb_migrates_and_counts_in_event_time_too(tmp_path: Path, codec: AvroCodec) -> None:
    url = f"duckdb:///{tmp_path / 'erp.duckdb'}"
    _check_migration(url, codec)
    erp = Erp(url, codec, SETTINGS)
    try:
        _check_read_orders(erp)
    finally:
        erp.db.close()


def _check_read_orders(erp: Erp) -> None:
    rng = random.Random(11)
    history = _history(rng)
    orders: list[list[int]] = [
        list(range(len(history))),
        list(reversed(range(len(history)))),
        sorted(range(len(history)), key=lambda i: history[i][0] == "sale"),  # stock first
        sorted(range(len(history)), key=lambda i: history[i][0] != "sale"),  # sales first
        sorted(range(len(history)), key=lambda i: history[i][1]),  # event time
    ]
    for _ in range(4):
        orders.append(rng.sample(range(len(history)), len(history)))
    results = []
    for variant, order in enumerate(orders):
        s = store()
        events = _events(s, history, variant)
        want_stock, want_adjustments = _oracle(events)
        batch: list[dict[str, Any]] = []
        for i in order:
            batch.append(events[i])
            if rng.random() < 0.4:
                erp.apply(*batch)
                batch = []
        if batch:
            erp.apply(*batch)
        got_stock = {sku: int((erp.on_hand(s, sku) or 0) * 1000) for sku in want_stock}
        assert got_stock == want_stock, (variant, order)
        rows = ledger(erp, s)
        got_adjustments = {r[0]: r[3] for r in rows if r[5] is not None}
        assert got_adjustments == want_adjustments, (variant, order)
        for sku, stock in want_stock.items():
            assert sum(r[3] for r in rows if r[2] == sku) == stock
        # Event ids differ by variant in their last bits only: compare without them.
        results.append([(r[0][:18], *r[1:]) for r in rows])
    assert all(r == results[0] for r in results)
    assert any(a != 0 for a in want_adjustments.values())


# -- an existing database -----------------------------------------------------------------


def test_an_existing_database_is_migrated_with_its_stock_unchanged(
    db_url: str, codec: AvroCodec
) -> None:
    _check_migration(db_url, codec)


def _check_migration(db_url: str, codec: AvroCodec) -> None:
    s = store()
    old = Database(db_url)
    old.migrate(COMPONENT, MIGRATIONS[:1])  # the arrival-order schema
    ids = [str(uuid.UUID(int=(n << 64) | 0xA11CE)) for n in range(5)]
    rows = [  # received 10, sold 2, counted 7 (booked -1), sold 1 after: on hand 6
        (ids[0], 0, s, "A", 10000, "received", None, "2026-03-02T09:00:00+00:00"),
        (ids[1], 1, s, "A", -2000, "sale", "T01/1", "2026-03-02T09:00:01.000250+00:00"),
        (ids[2], 0, s, "A", -1000, "counted", None, "2026-03-02T10:00:02+01:00"),
        (ids[3], 1, s, "A", -1000, "sale", "T01/2", "2026-03-02T09:00:03.500000+00:00"),
        (ids[4], 0, s, "B", 4000, "received", None, "2026-03-02T09:00:00+00:00"),
    ]
    old.executemany(
        "INSERT INTO erp_ledger (event_id, line_no, store_id, sku, qty_change, kind, "
        "reference, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    old.executemany(
        "INSERT INTO erp_stock (store_id, sku, on_hand, alerted, updated_at) "
        "VALUES (?, ?, ?, 0, '2026-03-02T09:00:04+00:00')",
        [(s, "A", 6000), (s, "B", 4000)],
    )
    old.close()
    erp = Erp(db_url, codec, SETTINGS)  # migrates
    try:
        assert erp.on_hand(s, "A") == Decimal("6.000")
        assert erp.on_hand(s, "B") == Decimal("4.000")
        times = dict(
            erp.db.fetchall("SELECT event_id, at_us FROM erp_ledger WHERE store_id = ?", (s,))
        )
        assert times[ids[1]] == micros(T0 + timedelta(seconds=1, microseconds=250))
        assert times[ids[2]] == micros(T0 + timedelta(seconds=2))  # 10:00 at +01:00
        assert times[ids[3]] == micros(T0 + timedelta(seconds=3.5))
        counted_at = micros(T0 + timedelta(seconds=2))
        assert erp.db.fetchall(
            "SELECT sku, at_us, event_id, counted FROM erp_counts WHERE store_id = ?", (s,)
        ) == [("A", counted_at, ids[2], 7000)]
        assert erp.db.fetchall(
            "SELECT sku, count_at, count_id FROM erp_stock WHERE store_id = ? ORDER BY sku",
            (s,),
        ) == [("A", counted_at, ids[2]), ("B", None, None)]
        # After the upgrade the old count takes part in event time like a new one.
        late = sale(s, at(1.5), ("SALE", "A", "0.5"))
        erp.apply(late)
        assert erp.on_hand(s, "A") == Decimal("6.000")
        assert adjustment(erp, {"event_id": ids[2]}) == -500
        erp.apply(count(s, "A", "4", at(5)))
        assert erp.on_hand(s, "A") == Decimal("4.000")
    finally:
        erp.db.close()
