"""Applying a batch exactly once: effects, event ids and offsets in one database transaction.

This is the synchronous heart of the runtime; it runs on a worker thread so the event loop
keeps heartbeating to the group coordinator while the database works.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tillstream_consumers.runtime import state
from tillstream_consumers.runtime.api import Consumer, Context, Encode, Record
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.partitioning import TopicPartition


@dataclass
class BatchOutcome:
    """What a batch came to: records applied, duplicates skipped, events published."""

    applied: list[Record] = field(default_factory=list)
    duplicates: list[Record] = field(default_factory=list)
    published: int = 0

    def add(self, other: BatchOutcome) -> None:
        """Count ``other`` (a part of the same batch) in this outcome."""
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.published += other.published


class Applier:
    """Applies batches of one consumer to its database."""

    def __init__(self, consumer: Consumer, db: Database, encode: Encode) -> None:
        self.consumer = consumer
        self.db = db
        self.encode = encode

    @property
    def name(self) -> str:
        return self.consumer.name

    def prepare(self) -> None:
        """Run the runtime's and the consumer's migrations, then the consumer's setup."""
        self.db.migrate(state.COMPONENT, state.migrations(self.db))
        # Per consumer, not per group: a second group must not run them again.
        self.db.migrate(
            self.consumer.identity(), list(self.consumer.migrations), formerly=self.name
        )
        self.consumer.setup(self.db)

    def offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return state.load_offsets(self.db, self.name, partitions)

    def apply(self, records: list[Record], positions: dict[TopicPartition, int]) -> BatchOutcome:
        """Apply ``records`` and advance the stored offsets to ``positions``, atomically.

        Records below the stored offset (another instance got there first) and event ids
        applied before (unless the consumer does not ``deduplicates``: then only twice in
        this batch) are skipped, so a batch given twice has its effects once. Anything
        raised rolls the whole transaction back.
        """
        outcome = BatchOutcome()
        with self.db.transaction():
            stored = state.load_offsets(self.db, self.name, positions, lock=True)
            fresh = [r for r in records if r.offset >= stored.get(r.topic_partition, -1)]
            ids = [r.event_id for r in fresh if r.event_id is not None]
            remembers = self.consumer.deduplicates
            seen = state.seen_events(self.db, self.name, ids) if ids and remembers else set()
            for record in fresh:
                event_id = record.event_id
                if event_id is not None and event_id in seen:
                    outcome.duplicates.append(record)
                    continue
                if event_id is not None:
                    seen.add(event_id)  # twice within one batch counts too
                outcome.applied.append(record)
            ctx = Context(self.db, datetime.now(UTC), self.encode)
            if outcome.applied:
                self.consumer.apply(ctx, outcome.applied)
                if remembers:
                    state.mark_events(
                        self.db, self.name, [r.event_id for r in outcome.applied if r.event_id]
                    )
            if ctx.outgoing:
                created = ctx.now.isoformat()
                state.queue_outgoing(
                    self.db,
                    self.name,
                    [(str(uuid.uuid4()), created, o.topic, o.key, o.value) for o in ctx.outgoing],
                )
                outcome.published = len(ctx.outgoing)
            state.store_offsets(self.db, self.name, positions, stored)
        return outcome

    def advance(self, positions: dict[TopicPartition, int]) -> None:
        """Move past records that were dead-lettered, without applying anything."""
        with self.db.transaction():
            stored = state.load_offsets(self.db, self.name, positions, lock=True)
            state.store_offsets(self.db, self.name, positions, stored)

    def pending_outgoing(self) -> list[tuple[Any, ...]]:
        return state.pending_outgoing(self.db, self.name)

    def forget_outgoing(self, ids: list[str]) -> None:
        with self.db.transaction():
            state.forget_outgoing(self.db, ids)

    def set_aside_outgoing(self, refused: list[tuple[str, str, str]]) -> None:
        with self.db.transaction():
            state.set_aside_outgoing(self.db, refused)

    def refresh(self) -> None:
        self.consumer.refresh(self.db)
