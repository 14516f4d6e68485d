"""The runtime's own tables, written in the same transaction as a consumer's effects.

- ``runtime_offsets``: the next offset to read per consumer and partition. It is the truth
  about progress; Kafka's committed offsets only trail it (for tools that show lag).
- ``runtime_events``: event ids already applied, so an event that reaches Kafka twice (a
  till resent after a crash, a dead letter replayed twice) has its effects once.
- ``runtime_outbox``: events a consumer published in a batch, sent after the batch commits.
- ``runtime_outbox_refused``: published events the broker refused for good (too large for
  their topic), set aside with the reason so the events behind them still go out.
- ``runtime_api_tokens``: named API tokens of the service's pages and APIs, hashed
  (``api_tokens.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tillstream_consumers.runtime import api_tokens
from tillstream_consumers.runtime.db import Database, Migration, chunks, marks
from tillstream_consumers.runtime.partitioning import TopicPartition

COMPONENT = "runtime"

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runtime_offsets (
        consumer    TEXT NOT NULL,
        topic       TEXT NOT NULL,
        part        INTEGER NOT NULL,
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (consumer, topic, part)
    );
    CREATE TABLE runtime_events (
        consumer TEXT NOT NULL,
        event_id TEXT NOT NULL,
        PRIMARY KEY (consumer, event_id)
    );
    CREATE TABLE runtime_outbox (
        id       TEXT PRIMARY KEY,
        consumer TEXT NOT NULL,
        created  TEXT NOT NULL,
        topic    TEXT NOT NULL,
        msg_key   {bytes} NOT NULL,
        msg_value {bytes} NOT NULL
    )
    """,
    """
    CREATE TABLE runtime_outbox_refused (
        id        TEXT PRIMARY KEY,
        consumer  TEXT NOT NULL,
        created   TEXT NOT NULL,
        topic     TEXT NOT NULL,
        msg_key   {bytes} NOT NULL,
        msg_value {bytes} NOT NULL,
        refused   TEXT NOT NULL,
        error     TEXT NOT NULL
    )
    """,
)

MIGRATIONS += (api_tokens.MIGRATION,)  # named API tokens of the service's pages and APIs

_BYTES = {"sqlite": "BLOB", "postgresql": "BYTEA", "duckdb": "BLOB"}


def migrations(db: Database) -> list[Migration]:
    return [m.format(bytes=_BYTES[db.dialect]) for m in MIGRATIONS]


def load_offsets(
    db: Database, consumer: str, partitions: Iterable[TopicPartition], *, lock: bool = False
) -> dict[TopicPartition, int]:
    """Stored next offsets of ``partitions`` (absent: never processed here).

    With ``lock``, the rows of these partition *numbers* are locked, in every topic the
    consumer reads, in one order (so two instances never deadlock). Topics are
    co-partitioned by store: partition 3 of the sales and of the stock-movement topic hold
    the same stores, so an instance that owns one must wait for a zombie still applying the
    other (a rebalance moves both). Instances owning other partitions do not wait.
    """
    wanted = set(partitions)
    numbers = sorted({part for _, part in wanted})
    if not numbers:
        return {}
    rows = db.fetchall(
        "SELECT topic, part, next_offset FROM runtime_offsets "
        f"WHERE consumer = ? AND part IN ({marks(numbers)}) "
        "ORDER BY topic, part" + (db.lock_clause() if lock else ""),
        (consumer, *numbers),
    )
    return {TopicPartition(t, int(p)): int(o) for t, p, o in rows if (t, int(p)) in wanted}


def store_offsets(
    db: Database,
    consumer: str,
    offsets: dict[TopicPartition, int],
    stored: dict[TopicPartition, int],
) -> None:
    """Advance the stored offsets (never backwards: a faster instance may have moved on)."""
    for tp, offset in offsets.items():
        topic, partition = tp
        previous = stored.get(tp)
        if previous is None:
            db.execute(
                "INSERT INTO runtime_offsets (consumer, topic, part, next_offset) "
                "VALUES (?, ?, ?, ?)",
                (consumer, topic, partition, offset),
            )
        elif offset > previous:
            db.execute(
                "UPDATE runtime_offsets SET next_offset = ? "
                "WHERE consumer = ? AND topic = ? AND part = ?",
                (offset, consumer, topic, partition),
            )


def seen_events(db: Database, consumer: str, event_ids: list[str]) -> set[str]:
    """Which of ``event_ids`` were applied before."""
    seen: set[str] = set()
    for chunk in chunks(event_ids):
        seen.update(
            row[0]
            for row in db.fetchall(
                "SELECT event_id FROM runtime_events "
                f"WHERE consumer = ? AND event_id IN ({marks(chunk)})",
                (consumer, *chunk),
            )
        )
    return seen


def mark_events(db: Database, consumer: str, event_ids: list[str]) -> None:
    db.insert_many("runtime_events", ("consumer", "event_id"), [(consumer, e) for e in event_ids])


def queue_outgoing(
    db: Database, consumer: str, rows: list[tuple[str, str, str, bytes, bytes]]
) -> None:
    """Rows of (id, created, topic, key, value)."""
    db.insert_many(
        "runtime_outbox",
        ("id", "consumer", "created", "topic", "msg_key", "msg_value"),
        [(i, consumer, c, t, k, v) for i, c, t, k, v in rows],
    )


def pending_outgoing(db: Database, consumer: str, limit: int = 1000) -> list[tuple[Any, ...]]:
    """Queued publications, oldest first: (id, topic, key, value)."""
    return [
        (i, t, bytes(k), bytes(v))
        for i, t, k, v in db.fetchall(
            "SELECT id, topic, msg_key, msg_value FROM runtime_outbox WHERE consumer = ? "
            "ORDER BY created, id LIMIT ?",
            (consumer, limit),
        )
    ]


def forget_outgoing(db: Database, ids: list[str]) -> None:
    db.executemany("DELETE FROM runtime_outbox WHERE id = ?", [(i,) for i in ids])


def set_aside_outgoing(db: Database, refused: list[tuple[str, str, str]]) -> None:
    """Move queued publications the broker refused to ``runtime_outbox_refused``:
    rows of (id, when, error)."""
    for event_id, when, error in refused:
        db.execute(
            "INSERT INTO runtime_outbox_refused "
            "(id, consumer, created, topic, msg_key, msg_value, refused, error) "
            "SELECT id, consumer, created, topic, msg_key, msg_value, ?, ? "
            "FROM runtime_outbox WHERE id = ?",
            (when, error, event_id),
        )
        db.execute("DELETE FROM runtime_outbox WHERE id = ?", (event_id,))
