"""This store's part of ``tillstream.estate-desired``: its records, held in memory and in the
estate file, so head office's decisions hold while the store is offline and across
restarts.

The topic holds every store's desired state, keyed ``["S001", "till/T01"]``
(``core.topics.estate_key``); a record of another store is passed over, one whose key does
not parse or whose content names another store or target than its key is logged and passed
over too (head office's publisher writes neither). A tombstone deletes the target: the
store's own configuration decides it again. Each batch is written with the positions after
it in one transaction; a record read again unchanged (a rebuild) is no change.

Rebuild: like the master-data copy, a copy last caught up longer ago than the topic keeps
tombstones may have missed some; it reads the topic again from the beginning as a new
generation, and once caught up deletes the targets it did not see again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tillstream.core.codec import AvroCodec, CodecError
from tillstream_edge.estate.db import EstateDb, Stored

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as fetched from the topic, not yet decoded."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class DesiredCopy:
    """One store's desired state (module docstring)."""

    def __init__(self, db: EstateDb, store_id: str, codec: AvroCodec) -> None:
        self.db = db
        self.store_id = store_id
        self.codec = codec
        self.records: dict[str, dict[str, Any]] = {}
        """Target -> its desired record (``EstateDesired``), decoded."""
        self._values: dict[str, bytes] = {}
        self.positions: dict[int, int] = {}
        self.generation = 1
        self.rebuilding = False
        self.caught_up_at: float | None = None

    def load(self, stored: Stored) -> None:
        """What the estate file holds (at start, before anything is served)."""
        for target, value in stored.desired.items():
            record = self._decode(target, value)
            if record is not None:
                self.records[target], self._values[target] = record, value
        self.positions = dict(stored.positions)
        self.generation, self.rebuilding = stored.generation, stored.rebuilding
        self.caught_up_at = stored.caught_up_at

    async def apply(self, batch: Iterable[RawRecord]) -> set[str]:
        """Keep this store's records of a batch read from the topic; the targets whose
        desired state changed."""
        changes: dict[str, bytes | None] = {}
        positions = dict(self.positions)
        for raw in batch:
            positions[raw.partition] = raw.offset + 1
            target = self._target(raw.key)
            if target is None:
                continue
            if raw.value is None:
                changes[target] = None
            elif self._decode(target, raw.value) is not None:
                changes[target] = raw.value
        await self.db.write_desired(changes, positions, self.generation)
        self.positions = positions
        changed = set()
        for target, value in changes.items():
            if value == self._values.get(target):
                continue  # the same record read again
            changed.add(target)
            if value is None:
                self.records.pop(target, None)
                self._values.pop(target, None)
            else:
                record = self._decode(target, value)
                assert record is not None  # decoded above
                self.records[target], self._values[target] = record, value
        return changed

    async def caught_up(self, at: float) -> set[str]:
        """Everything on the topic is held; a rebuild ends, returning the targets deleted
        because it did not see them again. The time is written once a minute at most (it is
        checked every few seconds)."""
        if not self.rebuilding and self.caught_up_at is not None and at - self.caught_up_at < 60:
            return set()
        swept = await self.db.caught_up(
            at, sweep_before=self.generation if self.rebuilding else None
        )
        self.caught_up_at, self.rebuilding = at, False
        for target in swept:
            self.records.pop(target, None)
            self._values.pop(target, None)
        return set(swept)

    async def start_rebuild(self) -> None:
        self.generation += 1
        await self.db.start_rebuild(self.generation)
        self.positions, self.rebuilding = {}, True

    def _target(self, key: bytes | None) -> str | None:
        """The target of a key of this store (None: another store's, or no key of ours)."""
        try:
            store, target = json.loads(key or b"")
        except (ValueError, TypeError):
            log.warning("estate: a desired-state record with a key that is no [store, target]")
            return None
        if store != self.store_id:
            return None
        return target if isinstance(target, str) else None

    def _decode(self, target: str, value: bytes) -> dict[str, Any] | None:
        try:
            decoded = self.codec.decode(value)
        except CodecError as exc:
            log.error("estate: the desired state of %s cannot be decoded: %s", target, exc)
            return None
        record = decoded.record
        if (
            decoded.event != "estate_desired"
            or record.get("store_id") != self.store_id
            or record.get("target") != target
        ):
            log.error("estate: the desired state of %s names another store or target", target)
            return None
        return record
