"""What the desired-state topic holds now, per store and target: the current record (or the
tombstone that cleared it) and the last version published, read to the topic's end offsets
(``tillstream.core.compacted``).

The version of a target's next record is the last one plus one, also after a tombstone (as
long as compaction keeps the record before it: a week, ``delete.retention.ms``), so an edge
never sees a version go back. Only the partitions of the keys asked for are read when keys
are given (one click on the fleet page reads one partition).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.compacted import partition_count, read_to_end
from tillstream.core.settings import Settings
from tillstream.core.topics import ESTATE_DESIRED, estate_key, partition_of

Key = tuple[str, str]
"""(store id, target)."""


@dataclass
class Current:
    """One target on the topic."""

    version: int
    """The last version published (a tombstone keeps the one before it)."""
    payload: dict[str, Any] | None
    """Its ``till``/``device``/``edge`` fields; None: cleared (or never set)."""
    published_by: str | None = None


@dataclass
class DesiredState:
    targets: dict[Key, Current] = field(default_factory=dict)

    def current(self, key: Key) -> Current | None:
        return self.targets.get(key)


def key_of(raw: bytes | None) -> Key | None:
    """(store, target) of a record key (``estate_key``), or None if it is not one."""
    if raw is None:
        return None
    try:
        store, target = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return (store, target) if isinstance(store, str) and isinstance(target, str) else None


async def read_desired(
    settings: Settings, codec: AvroCodec, keys: Collection[Key] | None = None
) -> DesiredState:
    """The topic's targets (all of them, or at least those of ``keys``)."""
    state = DesiredState()

    def visit(raw_key: bytes | None, value: bytes | None) -> None:
        key = key_of(raw_key)
        if key is None:
            return
        before = state.targets.get(key)
        if value is None:  # a tombstone: cleared, the version kept
            if before is not None:
                before.payload = None
            return
        try:
            record = codec.decode(value).record
        except CodecError:
            return  # not a record of ours: the next one replaces it
        version = int(record["version"])
        payload = {name: record.get(name) for name in ("till", "device", "edge")}
        last = max(version, before.version if before else 0)
        state.targets[key] = Current(last, payload, record.get("published_by"))

    partitions = None
    if keys is not None:
        count = await partition_count(settings, ESTATE_DESIRED.name)
        partitions = {partition_of(estate_key(*key), count) for key in keys}
    await read_to_end(settings, ESTATE_DESIRED.name, visit, partitions=partitions)
    return state
