"""The store's copy of head office's master data (items and prices), in its own SQLite file.

Its own file beside the outbox (``<outbox>.masterdata.db`` unless
``TILLSTREAM_EDGE_MASTERDATA`` names one), so applying a batch of 5,000 records never holds
the outbox's write lock while a till waits for its 202. All writes run on one dedicated
thread, in batches: a batch's rows and the Kafka positions after it (next offset per
partition) commit in one transaction, so a restart resumes exactly where the copy is.
Readers (the till API, the sales path, the devices) use their own connections, one per
thread; WAL lets them read while the writer writes.

What is kept: every item; prices of the chain and of this store only, and only those in the
store's currency (``TILLSTREAM_STORE_CURRENCY``): a price in another is no price here, so a
USD price never becomes a EUR store's list price. It deletes what the copy held under its key
(head office changed the price's currency), is counted and logged. A copy remembers its
currency: opened with another one, it deletes the prices it no longer uses and rebuilds from
the topics, to find the ones it skipped. A tombstone deletes.
A deleted row stays as a marker (``deleted = 1``) so the delta feeds can tell tills about
it; markers older than ``DELETED_KEPT_DAYS`` are pruned, and a till whose token is older
than the pruning must sync again from the start (410).

Every change takes the next number of one local sequence (``seq``): the delta feeds' token
is ``<epoch>-<seq>``; ``epoch`` is new per copy, so a token of a copy since thrown away is
recognised (``masterdata_tokens``). Unchanged records (same ``event_id``) keep their number:
a rebuild sends tills only what really changed.

Rebuild (an edge offline longer than the topics keep tombstones): positions are cleared
and a new generation starts; rows are served meanwhile; once caught up with the topics,
rows the rebuild did not see (deleted while the edge was away) are deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.identifiers import gtin14
from tillstream.core.prices import format_amount, valid_price
from tillstream.core.registry import registry_from_settings
from tillstream.core.settings import Settings
from tillstream.core.topics import ITEMS, PRICES
from tillstream_edge import masterdata_tokens as tokens
from tillstream_edge.masterdata_tokens import TokenError

log = logging.getLogger(__name__)

DELETED_KEPT_DAYS = 30
"""Days a deletion marker is kept for the delta feeds."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS items (
    sku             TEXT PRIMARY KEY,
    seq             INTEGER NOT NULL,
    gen             INTEGER NOT NULL,
    deleted         INTEGER NOT NULL DEFAULT 0,
    deleted_at      REAL,
    event_id        TEXT,
    gtins           TEXT,
    description     TEXT,
    unit_of_measure TEXT,
    weighed         INTEGER,
    stock_item      INTEGER,
    tax_class       TEXT,
    published_at    INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS items_seq ON items (seq);
CREATE TABLE IF NOT EXISTS gtins (
    gtin14 TEXT PRIMARY KEY,
    sku    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gtins_sku ON gtins (sku);
CREATE TABLE IF NOT EXISTS prices (
    key             TEXT PRIMARY KEY,
    seq             INTEGER NOT NULL,
    gen             INTEGER NOT NULL,
    deleted         INTEGER NOT NULL DEFAULT 0,
    deleted_at      REAL,
    sku             TEXT NOT NULL,
    store_id        TEXT,
    event_id        TEXT,
    amount          TEXT,
    currency        TEXT,
    valid_from      INTEGER,
    valid_from_day  TEXT,
    valid_until     INTEGER,
    valid_until_day TEXT,
    published_at    INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS prices_seq ON prices (seq);
CREATE INDEX IF NOT EXISTS prices_sku ON prices (sku) WHERE deleted = 0;
"""

_ITEM_COLUMNS = (
    "sku, seq, deleted, event_id, gtins, description, unit_of_measure, weighed, stock_item,"
    " tax_class, published_at"
)
_PRICE_COLUMNS = (
    "key, seq, deleted, sku, store_id, event_id, amount, currency, valid_from, valid_from_day,"
    " valid_until, valid_until_day, published_at"
)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as fetched from a master-data topic, not yet decoded."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(slots=True)
class Applied:
    """What one batch did, per topic."""

    read: dict[str, int] = field(default_factory=dict)
    """Records read (applied, skipped as another store's, or undecodable)."""
    undecodable: dict[str, int] = field(default_factory=dict)
    other_currency: int = 0
    """Prices of the chain or this store in another currency than the store's: not used."""
    newest_ms: dict[str, int] = field(default_factory=dict)
    """Timestamp of the newest record applied, per topic."""


@dataclass(frozen=True, slots=True)
class CopyState:
    epoch: str
    generation: int
    rebuilding: bool
    created_at: float
    last_caught_up_at: float | None
    newest_ms: dict[str, int]


@dataclass(frozen=True, slots=True)
class LineFacts:
    """What the copy says of a sold SKU: ``stock_item`` (None: unknown item) and its prices."""

    stock_item: bool | None
    prices: list[dict[str, Any]]


def _micros(value: datetime | None) -> int | None:
    if value is None:
        return None
    return (value - _EPOCH) // timedelta(microseconds=1)


def _instant(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + timedelta(microseconds=micros)


def _iso_day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _iso(micros: int | None) -> str | None:
    instant = _instant(micros)
    return None if instant is None else instant.isoformat().replace("+00:00", "Z")


class MasterDataCopy:
    """The copy of one store (see the module docstring)."""

    def __init__(
        self, path: Path, store_id: str, zone: tzinfo, codec: AvroCodec, currency: str = "EUR"
    ) -> None:
        self.path = path
        self.store_id = store_id
        self.zone = zone
        self.currency = currency
        """The store's currency: the only one its prices are used in."""
        self._codec = codec
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="masterdata")
        self._db: sqlite3.Connection | None = None
        self._seq = 0
        self._generation = 1
        self._readers = threading.local()
        self._opened = False
        self.epoch = ""

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # A lost batch after a power cut is read again from Kafka (positions commit with it).
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        for name, value in (
            ("epoch", tokens.new_epoch(self.store_id)),
            ("generation", "1"),
            ("rebuilding", "1"),  # a new copy is built from the beginning of the topics
            ("created_at", repr(now)),
            ("pruned_seq", "0"),
        ):
            db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)", (name, value))
        db.execute("COMMIT")
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        self.epoch = meta["epoch"]
        self._generation = int(meta["generation"])
        (items_seq,) = db.execute("SELECT coalesce(max(seq), 0) FROM items").fetchone()
        (prices_seq,) = db.execute("SELECT coalesce(max(seq), 0) FROM prices").fetchone()
        self._seq = max(items_seq, prices_seq, int(meta.get("last_seq", "0")))
        if meta.get("currency") != self.currency:
            self._change_currency(db, meta.get("currency"))
        self._db = db
        self._opened = True

    def _change_currency(self, db: sqlite3.Connection, before: str | None) -> None:
        """The copy is opened in another currency than it was kept in (or, made before copies
        kept one, in any): prices in another are deleted (tills are told through the feed);
        after a real change, a rebuild reads the prices skipped until now."""
        db.execute("BEGIN IMMEDIATE")
        try:
            foreign = db.execute(
                "SELECT key FROM prices WHERE deleted = 0 AND currency != ?", (self.currency,)
            ).fetchall()
            for (key,) in foreign:
                self._delete_price(db, key, time.time())
            if before is not None:
                self._generation += 1
                db.execute("DELETE FROM positions")
                self._set_meta(db, "generation", str(self._generation))
                self._set_meta(db, "rebuilding", "1")
            self._set_meta(db, "currency", self.currency)
            self._set_meta(db, "last_seq", str(self._seq))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if before is not None:
            log.warning(
                "master data: the store's currency is now %s (was %s): %d prices deleted, "
                "rebuilding the copy from the topics",
                self.currency,
                before,
                len(foreign),
            )

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # -- state -------------------------------------------------------------------------

    async def state(self) -> CopyState:
        meta: dict[str, str] = await self._run(self._meta)
        return CopyState(
            epoch=meta["epoch"],
            generation=int(meta["generation"]),
            rebuilding=meta["rebuilding"] == "1",
            created_at=float(meta["created_at"]),
            last_caught_up_at=float(meta["caught_up_at"]) if "caught_up_at" in meta else None,
            newest_ms={
                name.removeprefix("newest:"): int(value)
                for name, value in meta.items()
                if name.startswith("newest:")
            },
        )

    def _meta(self) -> dict[str, str]:
        assert self._db is not None
        return dict(self._db.execute("SELECT name, value FROM meta").fetchall())

    async def positions(self) -> dict[tuple[str, int], int]:
        """Next offset to read per (topic, partition)."""
        rows = await self._run(self._positions)
        return {(topic, partition): offset for topic, partition, offset in rows}

    def _positions(self) -> list[tuple[str, int, int]]:
        assert self._db is not None
        return self._db.execute("SELECT topic, partition, next_offset FROM positions").fetchall()

    async def start_rebuild(self) -> int:
        """Forget the positions and start a new generation; returns its number."""
        generation: int = await self._run(self._start_rebuild)
        return generation

    def _start_rebuild(self) -> int:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._generation += 1
            db.execute("DELETE FROM positions")
            self._set_meta(db, "generation", str(self._generation))
            self._set_meta(db, "rebuilding", "1")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return self._generation

    async def caught_up(self, positions: dict[tuple[str, int], int], at: float) -> int:
        """Record that the copy holds everything up to ``positions`` (the topics' ends) at
        ``at``; a rebuild ends here: what it did not see is deleted. Returns rows deleted."""
        swept: int = await self._run(self._caught_up, positions, at)
        return swept

    def _caught_up(self, positions: dict[tuple[str, int], int], at: float) -> int:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            swept = 0
            if self._meta_value(db, "rebuilding") == "1":
                swept = self._sweep(db, at)
                self._set_meta(db, "rebuilding", "0")
            db.executemany(
                "INSERT INTO positions (topic, partition, next_offset) VALUES (?, ?, ?)"
                " ON CONFLICT (topic, partition) DO UPDATE SET next_offset ="
                " max(next_offset, excluded.next_offset)",
                [(topic, partition, offset) for (topic, partition), offset in positions.items()],
            )
            self._set_meta(db, "caught_up_at", repr(at))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return swept

    def _sweep(self, db: sqlite3.Connection, at: float) -> int:
        stale_items = db.execute(
            "SELECT sku FROM items WHERE deleted = 0 AND gen < ?", (self._generation,)
        ).fetchall()
        for (sku,) in stale_items:
            self._delete_item(db, sku, at)
        stale_prices = db.execute(
            "SELECT key FROM prices WHERE deleted = 0 AND gen < ?", (self._generation,)
        ).fetchall()
        for (key,) in stale_prices:
            self._delete_price(db, key, at)
        if stale_items or stale_prices:
            log.warning(
                "master data rebuilt: %d items and %d prices deleted at head office while "
                "this edge was away",
                len(stale_items),
                len(stale_prices),
            )
        return len(stale_items) + len(stale_prices)

    @staticmethod
    def _meta_value(db: sqlite3.Connection, name: str) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _set_meta(db: sqlite3.Connection, name: str, value: str) -> None:
        db.execute(
            "INSERT INTO meta (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    # -- applying ----------------------------------------------------------------------

    async def apply(self, records: Sequence[RawRecord]) -> Applied:
        """Decode and apply a batch, and store the positions after it, in one transaction."""
        applied: Applied = await self._run(self._apply, records)
        return applied

    def _apply(self, records: Sequence[RawRecord]) -> Applied:
        assert self._db is not None
        db = self._db
        now = time.time()
        result = Applied()
        positions: dict[tuple[str, int], int] = {}
        # The last record per key wins (in the order the topics hold them): one write each.
        items: dict[str, dict[str, Any] | None] = {}
        prices: dict[str, dict[str, Any] | None] = {}
        for record in records:
            positions[(record.topic, record.partition)] = record.offset + 1
            result.read[record.topic] = result.read.get(record.topic, 0) + 1
            try:
                if record.topic == ITEMS.name:
                    sku, item = self._decode_item(record)
                    items.pop(sku, None)
                    items[sku] = item
                elif record.topic == PRICES.name:
                    key, price, held = self._decode_price(record)
                    if held and price is not None and price["currency"] != self.currency:
                        result.other_currency += 1
                        price = None  # no price here: it deletes what the key held
                    if held:
                        prices.pop(key, None)
                        prices[key] = price
                else:
                    continue
            except (CodecError, ValueError, KeyError, TypeError, InvalidOperation) as exc:
                # Never block the copy on one bad record: skipped, counted and logged.
                result.undecodable[record.topic] = result.undecodable.get(record.topic, 0) + 1
                log.error(
                    "master data: %s partition %d offset %d skipped: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    str(exc)[:300],
                )
                continue
            newest = result.newest_ms.get(record.topic, 0)
            result.newest_ms[record.topic] = max(newest, record.timestamp_ms)
        if result.other_currency:  # once a batch: a chain priced in another currency is many
            log.warning(
                "master data: %d prices of the chain or this store are in another currency "
                "than the store's %s: not used (TILLSTREAM_STORE_CURRENCY, or head office's "
                "price file)",
                result.other_currency,
                self.currency,
            )
        seq_before = self._seq
        db.execute("BEGIN IMMEDIATE")
        try:
            self._write_items(db, items, now)
            self._write_prices(db, prices, now)
            db.executemany(
                "INSERT INTO positions (topic, partition, next_offset) VALUES (?, ?, ?)"
                " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                [(topic, partition, offset) for (topic, partition), offset in positions.items()],
            )
            for topic, newest_ms in result.newest_ms.items():
                db.execute(
                    "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                    " SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                    (f"newest:{topic}", str(newest_ms)),
                )
            self._set_meta(db, "last_seq", str(self._seq))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._seq = seq_before
            raise
        return result

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _decode_item(self, record: RawRecord) -> tuple[str, dict[str, Any] | None]:
        if record.value is None:
            if record.key is None:
                raise ValueError("a tombstone without a key")
            return record.key.decode("utf-8"), None
        decoded = self._codec.decode(record.value)
        if decoded.event != ITEMS.schema:
            raise CodecError(f"a {decoded.event} record on {ITEMS.name}")
        return str(decoded.record["sku"]), decoded.record

    def _decode_price(self, record: RawRecord) -> tuple[str, dict[str, Any] | None, bool]:
        """``(key, price or None for a tombstone, held)``: only the chain's and this store's
        prices are held."""
        if record.key is None:
            raise ValueError("a price without a key")
        key = record.key.decode("utf-8")
        if record.value is None:
            parsed = json.loads(key)
            if not isinstance(parsed, list) or len(parsed) != 3:
                raise ValueError("a price key is [store or null, sku, start or null]")
            return key, None, parsed[0] is None or parsed[0] == self.store_id
        decoded = self._codec.decode(record.value)
        if decoded.event != PRICES.schema:
            raise CodecError(f"a {decoded.event} record on {PRICES.name}")
        price = decoded.record
        store = price.get("store_id")
        if not isinstance(price.get("amount"), Decimal):
            raise TypeError("amount is not a decimal")
        return key, price, store is None or store == self.store_id

    @staticmethod
    def _existing(
        db: sqlite3.Connection, table: str, column: str, keys: list[str]
    ) -> dict[str, tuple[str | None, bool]]:
        """key -> (event_id, deleted) of the rows already held, looked up in chunks."""
        found: dict[str, tuple[str | None, bool]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT {column}, event_id, deleted FROM {table} WHERE {column} IN ({marks})",
                chunk,
            )
            found.update({key: (event_id, bool(deleted)) for key, event_id, deleted in rows})
        return found

    def _write_items(
        self, db: sqlite3.Connection, items: dict[str, dict[str, Any] | None], now: float
    ) -> None:
        if not items:
            return
        existing = self._existing(db, "items", "sku", list(items))
        upserts: list[tuple[Any, ...]] = []
        codes: list[tuple[str, str]] = []
        touched: list[tuple[int, str]] = []
        deletes: list[tuple[float, int, str]] = []
        for sku, item in items.items():
            held = existing.get(sku)
            live = held is not None and not held[1]
            if item is None:
                if live:
                    deletes.append((now, self._next_seq(), sku))
                continue
            if live and held is not None and held[0] == str(item["event_id"]):
                touched.append((self._generation, sku))  # the same version (a re-read)
                continue
            gtins = [str(g) for g in item.get("gtins") or []]
            upserts.append(
                (
                    sku,
                    self._next_seq(),
                    self._generation,
                    str(item["event_id"]),
                    json.dumps(gtins),
                    str(item["description"]),
                    str(item.get("unit_of_measure") or "EA"),
                    int(bool(item.get("weighed"))),
                    int(bool(item.get("stock_item", True))),
                    item.get("tax_class"),
                    _micros(item.get("published_at")),
                )
            )
            codes += [(code, sku) for code in {gtin14(g) for g in gtins} if code is not None]
        db.executemany(
            "INSERT INTO items (sku, seq, gen, deleted, deleted_at, event_id, gtins, description,"
            " unit_of_measure, weighed, stock_item, tax_class, published_at)"
            " VALUES (?, ?, ?, 0, NULL, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (sku) DO UPDATE SET seq = excluded.seq, gen = excluded.gen, deleted = 0,"
            " deleted_at = NULL, event_id = excluded.event_id, gtins = excluded.gtins,"
            " description = excluded.description, unit_of_measure = excluded.unit_of_measure,"
            " weighed = excluded.weighed, stock_item = excluded.stock_item,"
            " tax_class = excluded.tax_class, published_at = excluded.published_at",
            upserts,
        )
        db.executemany("UPDATE items SET gen = ? WHERE sku = ?", touched)
        db.executemany(
            "UPDATE items SET deleted = 1, deleted_at = ?, seq = ?, gtins = NULL,"
            " description = NULL WHERE sku = ?",
            deletes,
        )
        db.executemany(
            "DELETE FROM gtins WHERE sku = ?",
            [(u[0],) for u in upserts] + [(d[2],) for d in deletes],
        )
        db.executemany(
            "INSERT INTO gtins (gtin14, sku) VALUES (?, ?)"
            " ON CONFLICT (gtin14) DO UPDATE SET sku = excluded.sku",
            codes,
        )

    def _write_prices(
        self, db: sqlite3.Connection, prices: dict[str, dict[str, Any] | None], now: float
    ) -> None:
        if not prices:
            return
        existing = self._existing(db, "prices", "key", list(prices))
        upserts: list[tuple[Any, ...]] = []
        touched: list[tuple[int, str]] = []
        deletes: list[tuple[float, int, str]] = []
        for key, price in prices.items():
            held = existing.get(key)
            live = held is not None and not held[1]
            if price is None:
                if live:
                    deletes.append((now, self._next_seq(), key))
                continue
            if live and held is not None and held[0] == str(price["event_id"]):
                touched.append((self._generation, key))
                continue
            upserts.append(
                (
                    key,
                    self._next_seq(),
                    self._generation,
                    str(price["sku"]),
                    price.get("store_id"),
                    str(price["event_id"]),
                    str(price["amount"]),
                    str(price["currency"]),
                    _micros(price.get("valid_from")),
                    _iso_day(price.get("valid_from_day")),
                    _micros(price.get("valid_until")),
                    _iso_day(price.get("valid_until_day")),
                    _micros(price.get("published_at")),
                )
            )
        db.executemany(
            "INSERT INTO prices (key, seq, gen, deleted, deleted_at, sku, store_id, event_id,"
            " amount, currency, valid_from, valid_from_day, valid_until, valid_until_day,"
            " published_at) VALUES (?, ?, ?, 0, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET seq = excluded.seq, gen = excluded.gen,"
            " deleted = 0, deleted_at = NULL, sku = excluded.sku, store_id = excluded.store_id,"
            " event_id = excluded.event_id, amount = excluded.amount,"
            " currency = excluded.currency, valid_from = excluded.valid_from,"
            " valid_from_day = excluded.valid_from_day, valid_until = excluded.valid_until,"
            " valid_until_day = excluded.valid_until_day, published_at = excluded.published_at",
            upserts,
        )
        db.executemany("UPDATE prices SET gen = ? WHERE key = ?", touched)
        db.executemany(
            "UPDATE prices SET deleted = 1, deleted_at = ?, seq = ? WHERE key = ?", deletes
        )

    def _delete_item(self, db: sqlite3.Connection, sku: str, now: float) -> None:
        cursor = db.execute(
            "UPDATE items SET deleted = 1, deleted_at = ?, seq = ?, gtins = NULL,"
            " description = NULL WHERE sku = ? AND deleted = 0",
            (now, self._seq + 1, sku),
        )
        if cursor.rowcount:
            self._seq += 1
            db.execute("DELETE FROM gtins WHERE sku = ?", (sku,))

    def _delete_price(self, db: sqlite3.Connection, key: str, now: float) -> None:
        cursor = db.execute(
            "UPDATE prices SET deleted = 1, deleted_at = ?, seq = ? WHERE key = ? AND deleted = 0",
            (now, self._seq + 1, key),
        )
        if cursor.rowcount:
            self._seq += 1

    async def prune(self, now: float) -> int:
        """Forget deletion markers older than DELETED_KEPT_DAYS; returns how many."""
        removed: int = await self._run(self._prune, now - DELETED_KEPT_DAYS * 86400)
        return removed

    def _prune(self, before: float) -> int:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            highest = 0
            removed = 0
            for table in ("items", "prices"):
                (top,) = db.execute(
                    f"SELECT coalesce(max(seq), 0) FROM {table} WHERE deleted = 1"
                    " AND deleted_at < ?",
                    (before,),
                ).fetchone()
                highest = max(highest, int(top))
                removed += db.execute(
                    f"DELETE FROM {table} WHERE deleted = 1 AND deleted_at < ?",
                    (before,),
                ).rowcount
            if highest:
                pruned = int(self._meta_value(db, "pruned_seq") or 0)
                self._set_meta(db, "pruned_seq", str(max(pruned, highest)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return removed

    # -- reading (any thread) ------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._readers, "db", None)
        if db is None:
            if not self._opened:
                raise RuntimeError("the master-data copy is not open")
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=5000")
            self._readers.db = db
        return db

    def counts(self) -> tuple[int, int]:
        """Items and prices held (deletion markers not counted)."""
        db = self._reader()
        (items,) = db.execute("SELECT count(*) FROM items WHERE deleted = 0").fetchone()
        (prices,) = db.execute("SELECT count(*) FROM prices WHERE deleted = 0").fetchone()
        return int(items), int(prices)

    def find_sku(self, code: str) -> str | None:
        """The SKU of an item, by its SKU or by one of its GTINs in any length."""
        db = self._reader()
        row = db.execute("SELECT sku FROM items WHERE sku = ? AND deleted = 0", (code,)).fetchone()
        if row is not None:
            return str(row[0])
        padded = gtin14(code)
        if padded is None:
            return None
        row = db.execute("SELECT sku FROM gtins WHERE gtin14 = ?", (padded,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def is_open(self) -> bool:
        return self._opened

    def sku_of_gtin(self, gtin: str) -> str | None:
        """The SKU a scanned GTIN belongs to, if the item master has it (None as well while
        the copy is not open)."""
        padded = gtin14(gtin)
        if padded is None or not self._opened:
            return None
        row = self._reader().execute("SELECT sku FROM gtins WHERE gtin14 = ?", (padded,)).fetchone()
        return None if row is None else str(row[0])

    def item(self, code: str, at: datetime) -> dict[str, Any] | None:
        """An item as the till API shows it, with the price valid for this store at ``at``."""
        sku = self.find_sku(code)
        if sku is None:
            return None
        row = (
            self._reader()
            .execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE sku = ? AND deleted = 0", (sku,))
            .fetchone()
        )
        if row is None:
            return None
        shown = _item_json(row)
        del shown["deleted"]
        price = valid_price(self.prices_of(sku), self.store_id, at, self.zone)
        shown["price"] = (
            None
            if price is None
            else {"amount": format_amount(price["amount"]), "currency": price["currency"]}
        )
        return shown

    def prices_of(self, sku: str) -> list[dict[str, Any]]:
        rows = (
            self._reader()
            .execute(
                f"SELECT {_PRICE_COLUMNS} FROM prices WHERE sku = ? AND deleted = 0",
                (sku,),
            )
            .fetchall()
        )
        return [_price_record(row) for row in rows]

    def line_facts(self, skus: Iterable[str]) -> dict[str, LineFacts]:
        """For each SKU the copy knows: whether it is a stock item, and its prices."""
        wanted = sorted(set(skus))
        if not wanted:
            return {}
        db = self._reader()
        marks = ",".join("?" * len(wanted))
        stock = dict(
            db.execute(
                f"SELECT sku, stock_item FROM items WHERE deleted = 0 AND sku IN ({marks})",
                wanted,
            ).fetchall()
        )
        prices: dict[str, list[dict[str, Any]]] = {}
        for row in db.execute(
            f"SELECT {_PRICE_COLUMNS} FROM prices WHERE deleted = 0 AND sku IN ({marks})",
            wanted,
        ):
            record = _price_record(row)
            prices.setdefault(record["sku"], []).append(record)
        return {
            sku: LineFacts(None if sku not in stock else bool(stock[sku]), prices.get(sku, []))
            for sku in wanted
            if sku in stock or sku in prices
        }

    def annotate_sale(
        self, sale: dict[str, Any], *, list_prices: bool = True
    ) -> dict[str, Any] | None:
        """The sale with what the item master says of its lines, or None if it says nothing
        new: ``stock_item`` false for an item head office marks as no stock item (a deposit,
        a fee), and ``list_price`` for a line whose unit price differs from the list price
        valid for this store when the sale was made (a price override). A line of an
        unknown or unpriced SKU, or priced in another currency, keeps ``list_price`` null.
        Without ``list_prices`` (a backfill of old sales: the copy holds today's prices, not
        the ones they replaced) only ``stock_item`` is marked."""
        lines = sale.get("lines")
        at = sale.get("occurred_at")
        if not self._opened or not isinstance(lines, list) or not isinstance(at, datetime):
            return None
        facts = self.line_facts(str(line.get("sku")) for line in lines if isinstance(line, dict))
        if not facts:
            return None
        changed = False
        annotated = []
        for line in lines:
            fact = facts.get(str(line.get("sku"))) if isinstance(line, dict) else None
            if fact is None:
                annotated.append(line)
                continue
            new = dict(line)
            if fact.stock_item is False and new.get("stock_item", True) is not False:
                new["stock_item"] = False
            price = valid_price(fact.prices, self.store_id, at, self.zone) if list_prices else None
            unit_price = new.get("unit_price")
            if (
                price is not None
                and price["currency"] == sale.get("currency")
                and isinstance(unit_price, Decimal)
                and unit_price != price["amount"]
            ):
                new["list_price"] = price["amount"]
            changed = changed or new != line
            annotated.append(new)
        return {**sale, "lines": annotated} if changed else None

    # -- delta feeds ----------------------------------------------------------------------

    def token(self, seq: int) -> str:
        return tokens.write(self.epoch, seq)

    def parse_token(self, token: str | None) -> int:
        """The change number a token stands for (no token: 0, the start). Only a token of an
        earlier copy of this store's, or older than the deletions kept, is ``gone``; anything
        else this copy did not give out is not a token at all (``masterdata_tokens``)."""
        if token is None:
            return 0
        seq = tokens.read(token, self.epoch, self.store_id)
        (pruned,) = self._reader().execute(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'pruned_seq'"
        ).fetchone() or (0,)
        if seq < int(pruned):
            raise TokenError(
                f"this token is older than the deletions kept ({DELETED_KEPT_DAYS} days): sync "
                "again from the start (no since)",
                gone=True,
            )
        if seq > self._seq:
            raise TokenError("this token is ahead of the store's copy: not one it gave out")
        return seq

    def item_changes(self, since: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Item changes after change ``since`` (at most ``limit``), and the last one's number."""
        rows = (
            self._reader()
            .execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE seq > ? ORDER BY seq LIMIT ?",
                (since, limit),
            )
            .fetchall()
        )
        return [_item_json(row) for row in rows], (rows[-1][1] if rows else since)

    def price_changes(self, since: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Price changes after change ``since`` (at most ``limit``), and the last one's number."""
        rows = (
            self._reader()
            .execute(
                f"SELECT {_PRICE_COLUMNS} FROM prices WHERE seq > ? ORDER BY seq LIMIT ?",
                (since, limit),
            )
            .fetchall()
        )
        return [_price_json(row) for row in rows], (rows[-1][1] if rows else since)


def _item_json(row: tuple[Any, ...]) -> dict[str, Any]:
    (sku, _seq, deleted, _event_id, gtins, description, unit, weighed, stock, tax, published) = row
    if deleted:
        return {"sku": sku, "deleted": True}
    return {
        "sku": sku,
        "deleted": False,
        "description": description,
        "gtins": json.loads(gtins),
        "unit_of_measure": unit,
        "weighed": bool(weighed),
        "stock_item": bool(stock),
        "tax_class": tax,
        "published_at": _iso(published),
    }


def _price_record(row: tuple[Any, ...]) -> dict[str, Any]:
    """A stored price as the price rule reads it (``tillstream.core.prices``)."""
    (key, _seq, _deleted, sku, store, event_id, amount, currency) = row[:8]
    valid_from, valid_from_day, valid_until, valid_until_day, published = row[8:]
    return {
        "id": key,
        "sku": sku,
        "store_id": store,
        "event_id": event_id,
        "amount": Decimal(amount),
        "currency": currency,
        "valid_from": _instant(valid_from),
        "valid_from_day": _day(valid_from_day),
        "valid_until": _instant(valid_until),
        "valid_until_day": _day(valid_until_day),
        "published_at": _instant(published),
    }


def _price_json(row: tuple[Any, ...]) -> dict[str, Any]:
    (key, _seq, deleted, sku, store) = row[:5]
    if deleted:
        return {"id": key, "sku": sku, "store_id": store, "deleted": True}
    (_, _, _, _, _, _event_id, amount, currency, valid_from, valid_from_day) = row[:10]
    (valid_until, valid_until_day, published) = row[10:]
    return {
        "id": key,
        "sku": sku,
        "store_id": store,
        "deleted": False,
        "amount": format_amount(Decimal(amount)),
        "currency": currency,
        "valid_from": _iso(valid_from),
        "valid_from_day": valid_from_day,
        "valid_until": _iso(valid_until),
        "valid_until_day": valid_until_day,
        "published_at": _iso(published),
    }


def copy_from_settings(settings: Settings) -> MasterDataCopy:
    """The store's copy, as the settings place it (not opened)."""
    if settings.store_id is None:
        raise ValueError("a store id is needed: TILLSTREAM_STORE_ID")
    return MasterDataCopy(
        masterdata_path(settings),
        settings.store_id,
        ZoneInfo(settings.store_timezone),
        AvroCodec(registry_from_settings(settings)),
        settings.store_currency,
    )


def masterdata_path(settings: Settings) -> Path:
    """The copy's file: ``TILLSTREAM_EDGE_MASTERDATA``, else beside the outbox."""
    if settings.edge_masterdata is not None:
        return settings.edge_masterdata
    outbox = settings.edge_outbox
    return outbox.with_name(f"{outbox.stem}.masterdata.db")
