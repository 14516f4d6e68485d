"""The durable local outbox: every accepted event is on disk before anyone is told so.

SQLite in WAL mode with ``synchronous=FULL``: a committed event survives a crash and a
power cut. Concurrent appends are grouped into one transaction (group commit), so many
tills posting at once cost one fsync, not one each. All database work runs on a single
dedicated thread, which keeps SQLite's threading rules simple and the event loop free.

An event id is stored once: a resubmission with identical content is reported as a
duplicate, one with different content as a conflict. Sent events are kept for
``dedupe_hours`` so late till retries are still recognised, then pruned.

An event Kafka refuses for good (too large, invalid, not authorized) is quarantined: kept,
with its reason, but out of the queue, so the events behind it keep flowing. The disk limit
counts only events not yet sent (quarantined ones included): sent events kept for
de-duplication never make the edge refuse sales.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from tillstream.core.settings import Settings
from tillstream_edge import set_aside
from tillstream_edge.set_aside import KeptTransaction, SetAsideRow

T = TypeVar("T")

ROW_OVERHEAD = 128
"""Bytes an event takes on disk besides its key and value (ids, type, times, index entries)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    event_type  TEXT NOT NULL,
    topic       TEXT NOT NULL,
    key         BLOB NOT NULL,
    value       BLOB NOT NULL,
    channel     TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    sent_at     REAL,
    quarantined_at REAL,
    quarantine_reason TEXT,
    till_digest BLOB
);
CREATE INDEX IF NOT EXISTS events_unsent ON events (seq) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS events_sent_at ON events (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_quarantined ON events (seq) WHERE quarantined_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS progress (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class OutboxFullError(RuntimeError):
    """The unsent backlog reached the configured disk limit; new events are refused."""


class Outcome(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """An encoded event ready for Kafka."""

    event_id: str
    event_type: str
    topic: str
    key: bytes
    value: bytes
    channel: str
    digest: bytes | None = None
    """SHA-256 of the event as its channel sent it, when the edge added to it (the item
    master's ``stock_item`` and ``list_price``): a resubmission is the same event if what
    was sent is the same, even after the item master changed. None: ``value`` is as sent."""


@dataclass(frozen=True, slots=True)
class Unit:
    """Events stored all or nothing: a request's batch, one POSLog transaction."""

    events: Sequence[OutboxEvent]
    if_conflict: SetAsideRow | None = None
    """Kept instead when one of its event ids is taken by other content (a POSLog
    transaction resent changed): the unit is set aside, the rest of its document stored."""
    resolves: int | None = None
    """The set-aside transaction these events re-run: marked resolved with them."""


@dataclass(frozen=True, slots=True)
class PendingEvent:
    seq: int
    event_id: str
    topic: str
    key: bytes
    value: bytes
    accepted_at: float


@dataclass(frozen=True, slots=True)
class Backlog:
    depth: int
    """Unsent events in the queue (quarantined ones are counted apart)."""
    oldest_accepted_at: float | None
    size_bytes: int
    """The outbox files on disk, sent events kept for de-duplication included."""
    unsent_bytes: int = 0
    """Keys and values of every unsent event and the documents of open set-aside POSLog
    transactions: what the disk limit counts."""
    quarantined: int = 0
    set_aside: int = 0
    """POSLog transactions set aside and not resolved yet."""


@dataclass(frozen=True, slots=True)
class QuarantinedEvent:
    seq: int
    event_id: str
    event_type: str
    topic: str
    key: bytes
    value: bytes
    channel: str
    accepted_at: float
    quarantined_at: float
    reason: str


class Outbox:
    """Durable store-and-forward queue of encoded events."""

    def __init__(
        self, path: Path, *, max_bytes: int = 2 * 1024**3, dedupe_hours: float = 72.0
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.dedupe_seconds = dedupe_hours * 3600
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._db: sqlite3.Connection | None = None
        self._queue: list[tuple[_Write, asyncio.Future[list[list[Outcome]]]]] = []
        self._writer_wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._full = False

    @property
    def is_full(self) -> bool:
        """Whether new events are being refused (backlog at the disk limit)."""
        return self._full

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._open)
        self._writer = asyncio.create_task(self._write_loop(), name="outbox-writer")

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # durable before acknowledged, power cuts included
        db.execute("PRAGMA busy_timeout=5000")
        _add_quarantine_columns(db)  # outboxes made before quarantine existed
        _add_digest_column(db)  # outboxes made before the edge added master data
        db.executescript(_SCHEMA)
        db.executescript(set_aside.SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        for _, future in self._queue:
            if not future.done():
                future.set_exception(RuntimeError("outbox closed"))
        self._queue.clear()
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # -- appending (group commit) --------------------------------------------------------

    async def append(self, events: Sequence[OutboxEvent]) -> list[Outcome]:
        """Store events durably; returns one outcome per event once they are on disk.

        A call is all or nothing: if any outcome is CONFLICT, none of ``events`` was stored.

        Raises:
            OutboxFullError: the backlog is at the disk limit (nothing was stored).
        """
        return (await self.store([Unit(events)]))[0]

    async def store(
        self, units: Sequence[Unit], kept: Sequence[SetAsideRow] = ()
    ) -> list[list[Outcome]]:
        """Store units (each all or nothing) and set-aside transactions in one transaction;
        one outcome per event of each unit, once everything is on disk.

        Raises:
            OutboxFullError: the backlog is at the disk limit (nothing was stored).
        """
        if self._full:
            raise OutboxFullError(
                f"outbox {self.path} holds more unsent events than its limit of "
                f"{self.max_bytes} bytes; Kafka has been unreachable too long"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[list[Outcome]]] = loop.create_future()
        self._queue.append((_Write(units, kept), future))
        self._writer_wakeup.set()
        return await future

    async def _write_loop(self) -> None:
        while True:
            await self._writer_wakeup.wait()
            self._writer_wakeup.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            try:
                results = await self._run(self._write, [write for write, _ in batch])
            except Exception as exc:  # a disk error fails the waiting requests, not the loop
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(outcome)

    def _write(self, writes: list[_Write]) -> list[list[list[Outcome]]]:
        assert self._db is not None
        now = time.time()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            results = []
            for write in writes:
                results.append([self._insert_unit(db, unit, now) for unit in write.units])
                for row in write.kept:
                    set_aside.insert(db, row, now)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return results

    @classmethod
    def _insert_unit(cls, db: sqlite3.Connection, unit: Unit, now: float) -> list[Outcome]:
        # One caller's unit shares the group commit but not its fate: a conflict refuses the
        # whole unit, and a refused unit must leave nothing behind to be published.
        db.execute("SAVEPOINT unit")
        outcomes = [cls._insert(db, e, now) for e in unit.events]
        if Outcome.CONFLICT in outcomes:
            db.execute("ROLLBACK TO unit")
            if unit.if_conflict is not None:
                set_aside.insert(db, unit.if_conflict, now)
            if unit.resolves is not None:
                set_aside.still_set_aside(db, unit.resolves, _CONFLICT, "conflict")
        elif unit.resolves is not None:
            set_aside.resolve(db, unit.resolves, {"event_ids": [e.event_id for e in unit.events]})
        db.execute("RELEASE unit")
        return outcomes

    @staticmethod
    def _insert(db: sqlite3.Connection, event: OutboxEvent, now: float) -> Outcome:
        cursor = db.execute(
            "INSERT INTO events (event_id, event_type, topic, key, value, channel, accepted_at,"
            " till_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
            (
                event.event_id,
                event.event_type,
                event.topic,
                event.key,
                event.value,
                event.channel,
                now,
                event.digest,
            ),
        )
        if cursor.rowcount == 1:
            return Outcome.ACCEPTED
        stored, stored_digest = db.execute(
            "SELECT value, till_digest FROM events WHERE event_id = ?", (event.event_id,)
        ).fetchone()
        if stored_digest is None and event.digest is None:
            same = bytes(stored) == event.value
        else:  # what the channel sent, compared: the edge's additions may differ since
            sent = bytes(stored_digest) if stored_digest is not None else _sha256(bytes(stored))
            same = sent == (event.digest or _sha256(event.value))
        return Outcome.DUPLICATE if same else Outcome.CONFLICT

    # -- forwarding ---------------------------------------------------------------------

    async def pending(self, limit: int) -> list[PendingEvent]:
        """The oldest unsent events, in acceptance order."""
        rows = await self._run(self._pending, limit)
        return [PendingEvent(*row) for row in rows]

    def _pending(self, limit: int) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return self._db.execute(
            "SELECT seq, event_id, topic, key, value, accepted_at FROM events"
            " WHERE sent_at IS NULL AND quarantined_at IS NULL ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()

    async def mark_sent(self, seqs: Sequence[int]) -> None:
        if seqs:
            await self._run(self._mark_sent, list(seqs))

    def _mark_sent(self, seqs: list[int]) -> None:
        assert self._db is not None
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "UPDATE events SET sent_at = ? WHERE seq = ?", [(now, s) for s in seqs]
        )
        self._db.execute("COMMIT")

    # -- quarantine ----------------------------------------------------------------------

    async def quarantine(self, seq: int, reason: str) -> None:
        """Take an event Kafka refuses for good out of the queue, keeping it and why."""
        await self._run(self._quarantine, seq, reason)

    def _quarantine(self, seq: int, reason: str) -> None:
        assert self._db is not None
        self._db.execute(
            "UPDATE events SET quarantined_at = ?, quarantine_reason = ? WHERE seq = ?",
            (time.time(), reason, seq),
        )

    async def quarantined(self) -> list[QuarantinedEvent]:
        """Every quarantined event, oldest first."""
        rows = await self._run(self._quarantined)
        return [QuarantinedEvent(*row) for row in rows]

    def _quarantined(self) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return self._db.execute(
            "SELECT seq, event_id, event_type, topic, key, value, channel, accepted_at,"
            " quarantined_at, quarantine_reason FROM events"
            " WHERE quarantined_at IS NOT NULL AND sent_at IS NULL ORDER BY seq"
        ).fetchall()

    async def release(self, event_ids: Sequence[str] | None = None) -> list[str]:
        """Put quarantined events back in the queue, in their original order (``None``: all).

        Returns the ids released; ids not in quarantine are left out.
        """
        released: list[str] = await self._run(self._release, event_ids)
        return released

    def _release(self, event_ids: Sequence[str] | None) -> list[str]:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(
                "SELECT event_id FROM events WHERE quarantined_at IS NOT NULL AND sent_at IS NULL"
                " ORDER BY seq"
            ).fetchall()
            wanted = None if event_ids is None else set(event_ids)
            ids = [r[0] for r in rows if wanted is None or r[0] in wanted]
            db.executemany(
                "UPDATE events SET quarantined_at = NULL, quarantine_reason = NULL"
                " WHERE event_id = ?",
                [(i,) for i in ids],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return ids

    # -- set-aside POSLog transactions (tillstream_edge.set_aside) ------------------------

    async def kept(
        self, ids: list[int] | None = None, *, resolved: bool = False
    ) -> list[KeptTransaction]:
        """Set-aside transactions, oldest first: the open ones (``resolved``: all)."""
        rows: list[KeptTransaction] = await self._run(
            lambda: set_aside.select(self._connection(), ids=ids, resolved=resolved)
        )
        return rows

    async def still_set_aside(self, row_id: int, reason: str, cause: str) -> None:
        """A retried transaction that still cannot be read: why, now."""
        await self._run(
            lambda: set_aside.still_set_aside(self._connection(), row_id, reason, cause)
        )

    async def resolve_without_events(self, row_id: int, resolution: dict[str, Any]) -> None:
        """A retried transaction that turned out to be nothing to publish (skipped)."""
        await self._run(lambda: set_aside.resolve(self._connection(), row_id, resolution))

    def _connection(self) -> sqlite3.Connection:
        assert self._db is not None
        return self._db

    # -- housekeeping -------------------------------------------------------------------

    async def backlog(self) -> Backlog:
        """Depth, oldest unsent event and disk use; also updates the disk-limit guard.

        The guard counts unsent events only: sent ones are kept for de-duplication and
        pruned on schedule, and must never make the edge refuse sales while Kafka is up.
        """
        backlog: Backlog = await self._run(self._backlog)
        self._full = backlog.unsent_bytes >= self.max_bytes
        return backlog

    def _backlog(self) -> Backlog:
        assert self._db is not None
        # length() of a BLOB reads its header, not its pages: cheap even for a deep backlog.
        depth, oldest, quarantined, unsent = self._db.execute(
            "SELECT count(*) FILTER (WHERE quarantined_at IS NULL),"
            " min(accepted_at) FILTER (WHERE quarantined_at IS NULL),"
            " count(*) FILTER (WHERE quarantined_at IS NOT NULL),"
            f" coalesce(sum(length(key) + length(value) + {ROW_OVERHEAD}), 0)"
            " FROM events WHERE sent_at IS NULL"
        ).fetchone()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))
        kept, kept_bytes = set_aside.open_counts(self._db)
        unsent = int(unsent) + kept_bytes
        return Backlog(int(depth), oldest, size, unsent, int(quarantined), kept)

    async def prune(self) -> int:
        """Forget sent events older than the dedupe window; returns how many."""
        removed: int = await self._run(self._prune, time.time() - self.dedupe_seconds)
        return removed

    def _prune(self, before: float) -> int:
        assert self._db is not None
        cursor = self._db.execute(
            "DELETE FROM events WHERE sent_at IS NOT NULL AND sent_at < ?", (before,)
        )
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return cursor.rowcount

    # -- progress markers (resumable imports) ----------------------------------------------

    async def get_progress(self, name: str) -> str | None:
        row = await self._run(self._get_progress, name)
        return None if row is None else str(row[0])

    def _get_progress(self, name: str) -> tuple[Any, ...] | None:
        assert self._db is not None
        result: tuple[Any, ...] | None = self._db.execute(
            "SELECT value FROM progress WHERE name = ?", (name,)
        ).fetchone()
        return result

    async def set_progress(self, name: str, value: str) -> None:
        await self._run(self._set_progress, name, value)

    def _set_progress(self, name: str, value: str) -> None:
        assert self._db is not None
        self._db.execute(
            "INSERT INTO progress (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )


@dataclass(frozen=True, slots=True)
class _Write:
    units: Sequence[Unit]
    kept: Sequence[SetAsideRow]


_CONFLICT = "an event id of this transaction was accepted with other content"


def _add_quarantine_columns(db: sqlite3.Connection) -> None:
    columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
    if columns and "quarantined_at" not in columns:
        db.execute("ALTER TABLE events ADD COLUMN quarantined_at REAL")
        db.execute("ALTER TABLE events ADD COLUMN quarantine_reason TEXT")


def _add_digest_column(db: sqlite3.Connection) -> None:
    columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
    if columns and "till_digest" not in columns:
        db.execute("ALTER TABLE events ADD COLUMN till_digest BLOB")


def _sha256(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def outbox_from_settings(settings: Settings) -> Outbox:
    """The store's outbox: its file and disk limit (``TILLSTREAM_EDGE_OUTBOX``, ``_MAX_MB``)."""
    return Outbox(settings.edge_outbox, max_bytes=settings.edge_outbox_max_mb * 1024 * 1024)
