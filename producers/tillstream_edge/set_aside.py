"""Set-aside POSLog transactions: kept in the store's outbox until re-run after a fix.

A transaction that should be a sale or till event but cannot be read (``poslog.SetAside``) is
kept as a document of its own, card numbers masked, with its reason, in the same SQLite
transaction as the events of the rest of its document: a 202 means both are on disk. The
same transaction coming again (a till resending its file) is kept once, by the digest of its
document. ``tillstream edge set-aside retry`` converts it again with the code (and dialect)
of now; its events and the mark that it is resolved are written in one transaction, so a
retry publishes it exactly once, however often it is run.

The statements here run on the outbox's connection and thread (``Outbox``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS set_aside (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    digest      BLOB NOT NULL UNIQUE,
    channel     TEXT NOT NULL,
    source      TEXT NOT NULL,
    label       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    cause       TEXT NOT NULL,
    dialect     TEXT NOT NULL,
    document    BLOB NOT NULL,
    set_aside_at REAL NOT NULL,
    retried_at  REAL,
    resolved_at REAL,
    resolution  TEXT
);
CREATE INDEX IF NOT EXISTS set_aside_open ON set_aside (id) WHERE resolved_at IS NULL;
"""


@dataclass(frozen=True, slots=True)
class SetAsideRow:
    """A transaction to keep: where it came from, why, and its document."""

    channel: str
    source: str
    """The file it came in (its name), or ``upload`` for ``POST /v1/poslog``."""
    label: str
    """How reports name it: ``4209 (#3)`` (sequence number, position in its document)."""
    kind: str
    reason: str
    cause: str
    dialect: str
    document: bytes

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.document).digest()


@dataclass(frozen=True, slots=True)
class KeptTransaction:
    """A set-aside transaction as the outbox holds it."""

    id: int
    channel: str
    source: str
    label: str
    kind: str
    reason: str
    cause: str
    dialect: str
    document: bytes
    set_aside_at: float
    retried_at: float | None
    resolved_at: float | None
    resolution: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "source": self.source,
            "transaction": self.label,
            "kind": self.kind,
            "reason": self.reason,
            "cause": self.cause,
            "dialect": self.dialect,
            "set_aside_at": self.set_aside_at,
            "retried_at": self.retried_at,
            "resolved_at": self.resolved_at,
            "resolution": self.resolution,
        }


_COLUMNS = (
    "id, channel, source, label, kind, reason, cause, dialect, document, set_aside_at,"
    " retried_at, resolved_at, resolution"
)


def insert(db: sqlite3.Connection, row: SetAsideRow, now: float) -> int | None:
    """Keep ``row``; its id, or None when the same transaction is kept already."""
    cursor = db.execute(
        "INSERT INTO set_aside (digest, channel, source, label, kind, reason, cause, dialect,"
        " document, set_aside_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (digest) DO NOTHING",
        (row.digest, row.channel, row.source[:200], row.label, row.kind, row.reason[:2000],
         row.cause, row.dialect, row.document, now),
    )  # fmt: skip
    return cursor.lastrowid if cursor.rowcount == 1 else None


def resolve(db: sqlite3.Connection, row_id: int, resolution: dict[str, Any]) -> None:
    now = time.time()
    db.execute(
        "UPDATE set_aside SET resolved_at = ?, retried_at = ?, resolution = ?"
        " WHERE id = ? AND resolved_at IS NULL",
        (now, now, json.dumps(resolution), row_id),
    )


def still_set_aside(db: sqlite3.Connection, row_id: int, reason: str, cause: str) -> None:
    """A retry that failed again: the reason of now."""
    db.execute(
        "UPDATE set_aside SET retried_at = ?, reason = ?, cause = ? WHERE id = ?",
        (time.time(), reason[:2000], cause, row_id),
    )


def select(
    db: sqlite3.Connection, *, ids: list[int] | None = None, resolved: bool = False
) -> list[KeptTransaction]:
    """Kept transactions, oldest first: the open ones (``resolved``: every one)."""
    where = "" if resolved else " WHERE resolved_at IS NULL"
    rows = db.execute(f"SELECT {_COLUMNS} FROM set_aside{where} ORDER BY id").fetchall()
    kept = [_kept(row) for row in rows]
    if ids is not None:
        wanted = set(ids)
        kept = [k for k in kept if k.id in wanted]
    return kept


def open_counts(db: sqlite3.Connection) -> tuple[int, int]:
    """(open set-aside transactions, the bytes of their documents)."""
    count, size = db.execute(
        "SELECT count(*), coalesce(sum(length(document)), 0) FROM set_aside"
        " WHERE resolved_at IS NULL"
    ).fetchone()
    return int(count), int(size)


def _kept(row: tuple[Any, ...]) -> KeptTransaction:
    (row_id, channel, source, label, kind, reason, cause, dialect, document, at, retried,
     resolved, resolution) = row  # fmt: skip
    return KeptTransaction(
        row_id, channel, source, label, kind, reason, cause, dialect, bytes(document), at,
        retried, resolved, json.loads(resolution) if resolution else None,
    )  # fmt: skip
