"""Stock on hand in event time: the last count of a SKU plus every change that happened after
it, whatever order the sales and stock-movement topics are read in (docs/erp.md, "Counts").

Movements of one (store, sku) are ordered by ``occurred_at`` (microseconds). A change at the
same instant as a count comes before it (the count saw it); of two counts at one instant, the
greater event id is the later. Then:

- ``on_hand`` = the last count's quantity + the changes after it;
- a count's ledger row holds its adjustment, the counted quantity minus the stock just before
  it in event time, so the ledger of a SKU always sums to ``on_hand``.

A change after the last count (the usual case) costs what it always did. A change from before
the last count leaves ``on_hand`` alone (the count saw it) and corrects the adjustment of the
first count after it. A count sums the changes between it and its neighbours. Both use
indexed range reads on the SKU's own rows (``erp_counts``, ``erp_ledger_at``), never a scan of
its history.

Corrections wait in ``corrections`` and are resolved together: those of one SKU before its
next count is booked (they belong to the counts known when they were made), the rest when the
batch is written, with one read of ``erp_counts`` per store and one ``executemany``. When the
topics are read far apart (a consumer catching up), most changes are late, and a round trip
per line was what made a PostgreSQL ERP slow.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tillstream_consumers.erp.movements import Movement, StockEvent
from tillstream_consumers.runtime.db import Database, chunks, marks

Key = tuple[str, str]
"""(store id, sku)"""
Position = tuple[int, str]
"""A count's place in event time: (``occurred_at`` in microseconds, event id)."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LEDGER_COLUMNS = (
    "event_id",
    "line_no",
    "store_id",
    "sku",
    "qty_change",
    "kind",
    "reference",
    "occurred_at",
    "at_us",
    "counted",
    "sales_day",
)


def micros(at: datetime) -> int:
    """Microseconds since the epoch: the exact, zone-free order of event times."""
    d = at - EPOCH  # integer parts: exact, and cheaper than dividing timedeltas
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


@dataclass(slots=True)
class StockState:
    on_hand: int
    alerted: bool
    """A suggestion was published for the current crossing of the reorder point."""
    last_count: Position | None = None


@dataclass(frozen=True, slots=True)
class Count:
    at_us: int
    event_id: str
    counted: int


class StockBook:
    """Stock state of the (store, sku) pairs of one batch, and the ledger rows it writes.

    Ledger rows wait in ``pending`` and go out in one insert; before a count reads the
    ledger, the rows pending so far are written, so the read sees the whole batch up to that
    event. Corrections to counts' adjustments wait in ``corrections``: (position, delta) for
    the first count after the position.
    """

    def __init__(self, db: Database, keys: Iterable[Key]) -> None:
        self.db = db
        self.stock = load_stock(db, keys)
        self.pending: list[tuple[Any, ...]] = []
        self.corrections: dict[Key, list[tuple[Position, int]]] = {}
        self._event: StockEvent | None = None
        self._times = (0, "", "")
        """(at_us, occurred_at text, day text) of ``_event``: once per event, not per line."""

    def move(self, event: StockEvent, m: Movement) -> StockState:
        """Book one movement of ``event``; the state of its (store, sku) after it."""
        key = (event.store_id, m.sku)
        state = self.stock[key]
        if event is not self._event:
            self._event = event
            self._times = (
                micros(event.occurred_at),
                event.occurred_at.isoformat(),
                event.day.isoformat(),
            )
        at, occurred, day = self._times
        change, counted = m.quantity, (m.quantity if m.is_count else None)
        if m.is_count:
            change = self._count(key, state, (at, event.event_id), m.quantity)
        elif state.last_count is None or at > state.last_count[0]:
            state.on_hand += change
        else:  # the last count already saw it: it belongs to the first count after it
            # (event id "": a change comes before any count at its instant)
            self.corrections.setdefault(key, []).append(((at, ""), -change))
        self.pending.append(
            (event.event_id, m.line_no, *key, change, m.kind, event.reference, occurred, at,
             counted, day)
        )  # fmt: skip
        return state

    def _count(self, key: Key, state: StockState, at: Position, counted: int) -> int:
        """Book a count at ``at``; returns its adjustment."""
        self.flush()
        if key in self.corrections:  # they belong to the counts known before this one
            self._resolve({key: self.corrections.pop(key)})
        self.db.execute(
            "INSERT INTO erp_counts (store_id, sku, at_us, event_id, counted) "
            "VALUES (?, ?, ?, ?, ?)",
            (*key, *at, counted),
        )
        if state.last_count is None or at > state.last_count:
            after = self._changes(key, at[0], None)
            adjustment = counted - (state.on_hand - after)  # the ledger sums to on_hand
            state.on_hand = counted + after
            state.last_count = at
            return adjustment
        # A count from before the last one: stock on hand stays; the next count's
        # adjustment now starts from this one.
        previous = self._previous_count(key, at)
        if previous is None:
            before = self._changes(key, None, at[0])
        else:
            before = previous.counted + self._changes(key, previous.at_us, at[0])
        adjustment = counted - before
        self.corrections.setdefault(key, []).append((at, -adjustment))
        return adjustment

    def _changes(self, key: Key, after: int | None, upto: int | None) -> int:
        """Sum of the changes (not counts) with ``after < at_us <= upto``."""
        sql = "SELECT SUM(qty_change) FROM erp_ledger WHERE store_id = ? AND sku = ?"
        params: list[Any] = [*key]
        if after is not None:
            sql += " AND at_us > ?"
            params.append(after)
        if upto is not None:
            sql += " AND at_us <= ?"
            params.append(upto)
        row = self.db.fetchone(sql + " AND counted IS NULL", params)
        return int(row[0]) if row and row[0] is not None else 0

    def _previous_count(self, key: Key, at: Position) -> Count | None:
        row = self.db.fetchone(
            "SELECT at_us, event_id, counted FROM erp_counts "
            "WHERE store_id = ? AND sku = ? AND at_us <= ? AND NOT (at_us = ? AND event_id >= ?) "
            "ORDER BY at_us DESC, event_id DESC LIMIT 1",
            (*key, at[0], at[0], at[1]),
        )
        return None if row is None else Count(int(row[0]), str(row[1]), int(row[2]))

    def _resolve(self, corrections: dict[Key, list[tuple[Position, int]]]) -> None:
        """Add each correction to the first count after its position, in one read of the
        counts per store and one update."""
        by_store: dict[str, dict[str, list[tuple[Position, int]]]] = {}
        for (store, sku), items in corrections.items():
            by_store.setdefault(store, {})[sku] = items
        deltas: dict[str, int] = {}
        for store, skus in by_store.items():
            for chunk in chunks(sorted(skus)):
                since = min(position[0] for sku in chunk for position, _ in skus[sku])
                counts: dict[str, list[Position]] = {}
                for sku, at_us, event_id in self.db.fetchall(
                    "SELECT sku, at_us, event_id FROM erp_counts "
                    f"WHERE store_id = ? AND sku IN ({marks(chunk)}) AND at_us >= ? "
                    "ORDER BY sku, at_us, event_id",
                    (store, *chunk, since),
                ):
                    counts.setdefault(sku, []).append((int(at_us), str(event_id)))
                for sku in chunk:
                    after = counts.get(sku, [])
                    for position, delta in skus[sku]:
                        i = bisect_right(after, position)
                        if i == len(after):  # callers are before the last count: never
                            raise RuntimeError(f"erp_counts has no count of {sku} after {position}")
                        deltas[after[i][1]] = deltas.get(after[i][1], 0) + delta
        self.db.executemany(
            "UPDATE erp_ledger SET qty_change = qty_change + ? WHERE event_id = ? AND line_no = 0",
            [(delta, event_id) for event_id, delta in sorted(deltas.items()) if delta],
        )

    def flush(self) -> None:
        """Write the pending ledger rows."""
        self.db.insert_many("erp_ledger", LEDGER_COLUMNS, self.pending)
        self.pending = []

    def write(self, now: str) -> None:
        """Write the ledger rows and corrections still pending and every touched pair's
        stock state."""
        self.flush()
        if self.corrections:
            self._resolve(self.corrections)
            self.corrections = {}
        rows = [
            (s, k, st.on_hand, int(st.alerted), now, *(st.last_count or (None, None)))
            for (s, k), st in sorted(self.stock.items())
        ]
        self.db.insert_many(
            "erp_stock",
            ("store_id", "sku", "on_hand", "alerted", "updated_at", "count_at", "count_id"),
            rows,
            "ON CONFLICT (store_id, sku) DO UPDATE SET "
            "on_hand = excluded.on_hand, alerted = excluded.alerted, "
            "updated_at = excluded.updated_at, count_at = excluded.count_at, "
            "count_id = excluded.count_id",
        )


def load_stock(db: Database, keys: Iterable[Key]) -> dict[Key, StockState]:
    """Stock state of ``keys`` (by primary key); pairs never seen start at zero."""
    stock = {key: StockState(0, False) for key in keys}
    by_store: dict[str, list[str]] = {}
    for store, sku in sorted(stock):
        by_store.setdefault(store, []).append(sku)
    for store, skus in by_store.items():
        for chunk in chunks(skus):
            for sku, on_hand, alerted, count_at, count_id in db.fetchall(
                "SELECT sku, on_hand, alerted, count_at, count_id FROM erp_stock "
                f"WHERE store_id = ? AND sku IN ({marks(chunk)})",
                (store, *chunk),
            ):
                last = None if count_at is None else (int(count_at), str(count_id))
                stock[(store, sku)] = StockState(int(on_hand), bool(alerted), last)
    return stock
