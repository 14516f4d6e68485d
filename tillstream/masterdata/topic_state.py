"""What a master-data topic holds now: the latest record per key, read to the end offsets
(``tillstream.core.compacted``), with only the fields a file row is compared on.

A tombstone removes its key. A record that cannot be decoded is held as ``None``: its key
exists, but no file row will compare equal to it, so publishing replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.compacted import TopicReadError, read_to_end
from tillstream.core.settings import Settings
from tillstream.masterdata.csv_file import PROGRESS_EVERY, Progress

__all__ = ["TopicReadError", "TopicState", "read_topic"]


@dataclass
class TopicState:
    topic: str
    held: dict[bytes, dict[str, Any] | None] = field(default_factory=dict)
    """Key -> the latest record's content fields (None: undecodable)."""
    records: int = 0
    """Records read (tombstones and replaced versions included)."""


async def read_topic(
    settings: Settings,
    codec: AvroCodec,
    topic: str,
    content: tuple[str, ...],
    progress: Progress | None = None,
) -> TopicState:
    """The topic's current records, by key, with only their ``content`` fields."""
    state = TopicState(topic)
    reported = 0

    def visit(key: bytes | None, value: bytes | None) -> None:
        _hold(state, codec, key, value, content)

    def said(records: int) -> None:
        nonlocal reported
        if progress is not None and records - reported >= PROGRESS_EVERY * 5:
            reported = records
            progress(f"{topic}: {records} records read")

    await read_to_end(settings, topic, visit, progress=said)
    return state


def _hold(
    state: TopicState,
    codec: AvroCodec,
    key: bytes | None,
    value: bytes | None,
    content: tuple[str, ...],
) -> None:
    state.records += 1
    if key is None:
        return  # not ours: master data is always keyed
    if value is None:
        state.held.pop(key, None)
        return
    try:
        record = codec.decode(value).record
    except CodecError:
        state.held[key] = None
        return
    state.held[key] = {name: record.get(name) for name in content}
