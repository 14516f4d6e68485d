"""The estate's SQLite file beside the outbox (``<outbox>.estate.db``): what makes head
office's desired state hold while the store is offline and across restarts, and what the
tills said of themselves.

Its own file, so none of its writes ever takes the outbox's write lock while a till waits
for a 202; its own thread, as the outbox and the master-data copy have. WAL with
``synchronous=FULL``: a suspension applied is on disk before it is reported applied. Writes
are few: a batch of desired records with the topic positions after it (one transaction,
so a restart resumes exactly there), the outcome of applying them, and the tills' state
every few seconds (never one write per sale).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tillstream.core.settings import Settings

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    partition   INTEGER PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS desired (
    target TEXT PRIMARY KEY,
    value  BLOB NOT NULL,
    gen    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS applied (
    target  TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    applied INTEGER NOT NULL,
    error   TEXT,
    at      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tills (
    till_id TEXT PRIMARY KEY,
    state   TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class AppliedRow:
    """How the edge applied a target's desired state (the report's ``applied``)."""

    target: str
    version: int
    applied: bool
    error: str | None
    at: float


@dataclass(frozen=True, slots=True)
class Stored:
    """Everything the file holds, read at start."""

    desired: dict[str, bytes]
    """Target -> its desired record as published (Avro, Confluent framing)."""
    positions: dict[int, int]
    generation: int
    rebuilding: bool
    caught_up_at: float | None
    applied: dict[str, AppliedRow]
    tills: dict[str, str]
    """Till id -> its state (JSON, ``tills.TillState``)."""


class EstateDb:
    """One store's estate file (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="estate")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> Stored:
        await self._run(self._open)
        stored: Stored = await self._run(self._load)
        return stored

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "the estate file is not open"
        return self._db

    def _load(self) -> Stored:
        db = self._conn()
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        caught_up = meta.get("caught_up_at")
        return Stored(
            desired={t: bytes(v) for t, v in db.execute("SELECT target, value FROM desired")},
            positions=dict(db.execute("SELECT partition, next_offset FROM positions").fetchall()),
            generation=int(meta.get("generation", "1")),
            rebuilding=meta.get("rebuilding") == "1",
            caught_up_at=None if caught_up is None else float(caught_up),
            applied={
                row[0]: AppliedRow(row[0], row[1], bool(row[2]), row[3], row[4])
                for row in db.execute("SELECT target, version, applied, error, at FROM applied")
            },
            tills=dict(db.execute("SELECT till_id, state FROM tills").fetchall()),
        )

    # -- desired state ---------------------------------------------------------------------

    async def write_desired(
        self, changes: Mapping[str, bytes | None], positions: Mapping[int, int], generation: int
    ) -> None:
        """A batch read from the topic: each target's record (None: deleted) and the
        positions after it, in one transaction."""
        await self._run(self._write_desired, dict(changes), dict(positions), generation)

    def _write_desired(
        self, changes: dict[str, bytes | None], positions: dict[int, int], generation: int
    ) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            for target, value in changes.items():
                if value is None:
                    db.execute("DELETE FROM desired WHERE target = ?", (target,))
                else:
                    db.execute(
                        "INSERT INTO desired (target, value, gen) VALUES (?, ?, ?) ON CONFLICT "
                        "(target) DO UPDATE SET value = excluded.value, gen = excluded.gen",
                        (target, value, generation),
                    )
            db.executemany(
                "INSERT INTO positions (partition, next_offset) VALUES (?, ?) ON CONFLICT "
                "(partition) DO UPDATE SET next_offset = excluded.next_offset",
                positions.items(),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def caught_up(self, at: float, *, sweep_before: int | None) -> list[str]:
        """The copy holds everything on the topic: the time is kept; ``sweep_before``: a
        rebuild ends, and the targets it did not see again (deleted while the edge was away,
        their tombstones since compacted) are deleted and returned."""
        swept: list[str] = await self._run(self._caught_up, at, sweep_before)
        return swept

    def _caught_up(self, at: float, sweep_before: int | None) -> list[str]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            swept: list[str] = []
            if sweep_before is not None:
                swept = [
                    row[0]
                    for row in db.execute(
                        "SELECT target FROM desired WHERE gen < ?", (sweep_before,)
                    ).fetchall()
                ]
                db.execute("DELETE FROM desired WHERE gen < ?", (sweep_before,))
                _set_meta(db, "rebuilding", "0")
            _set_meta(db, "caught_up_at", repr(at))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return swept

    async def start_rebuild(self, generation: int) -> None:
        """Read the topic again from the beginning as ``generation``."""
        await self._run(self._start_rebuild, generation)

    def _start_rebuild(self, generation: int) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM positions")
        _set_meta(db, "generation", str(generation))
        _set_meta(db, "rebuilding", "1")
        db.execute("COMMIT")

    # -- what was applied, what the tills said -----------------------------------------------

    async def save_applied(self, rows: list[AppliedRow], deleted: list[str]) -> None:
        await self._run(self._save_applied, rows, deleted)

    def _save_applied(self, rows: list[AppliedRow], deleted: list[str]) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM applied WHERE target = ?", [(t,) for t in deleted])
        db.executemany(
            "INSERT INTO applied (target, version, applied, error, at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (target) DO UPDATE SET version = excluded.version, "
            "applied = excluded.applied, error = excluded.error, at = excluded.at",
            [(r.target, r.version, int(r.applied), r.error, r.at) for r in rows],
        )
        db.execute("COMMIT")

    async def save_tills(self, states: Mapping[str, str]) -> None:
        if states:
            await self._run(self._save_tills, dict(states))

    def _save_tills(self, states: dict[str, str]) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO tills (till_id, state) VALUES (?, ?) ON CONFLICT (till_id) "
            "DO UPDATE SET state = excluded.state",
            states.items(),
        )
        db.execute("COMMIT")


def _set_meta(db: sqlite3.Connection, name: str, value: str) -> None:
    db.execute(
        "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) "
        "DO UPDATE SET value = excluded.value",
        (name, value),
    )


def estate_path(settings: Settings) -> Path:
    """Beside the outbox, on the same disk: ``outbox.db`` has ``outbox.estate.db``."""
    outbox = settings.edge_outbox
    return outbox.with_name(f"{outbox.stem}.estate.db")
