"""Publishing the changes of a master-data file: new and changed records, and tombstones.

Each record published gets a new ``event_id`` and ``published_at`` (one instant for the
run); keys are the topics' (``item_key``, ``price_key``). The producer is the project's
idempotent one (acks from all in-sync replicas); publishing returns once every record is
acknowledged, or raises.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import create_topics, make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import ITEMS, PRICES, TopicSpec
from tillstream.masterdata import items_csv, prices_csv
from tillstream.masterdata.changes import Changes, Check, compare
from tillstream.masterdata.csv_file import PROGRESS_EVERY, Progress
from tillstream.masterdata.topic_state import read_topic

BATCH_BYTES = 256 * 1024
"""Producer batch size: master data is many small records."""


@dataclass(frozen=True)
class Kind:
    """One kind of master data: its file reader, its topic, how a key reads to people."""

    name: str
    topic: TopicSpec
    content: tuple[str, ...]
    read: Callable[[Path, Progress | None], dict[bytes, dict[str, Any]]]
    describe_key: Callable[[bytes], str]
    check: Check | None = None
    """What must hold across the whole master, beyond one file."""


ITEM_KIND = Kind(
    "items",
    ITEMS,
    items_csv.CONTENT,
    items_csv.read_items,
    lambda key: key.decode("utf-8", "replace"),
    items_csv.gtin_clashes,
)
PRICE_KIND = Kind(
    "prices",
    PRICES,
    prices_csv.CONTENT,
    prices_csv.read_prices,
    prices_csv.describe_key,
    prices_csv.currency_clashes,
)


async def publish_file(
    settings: Settings,
    codec: AvroCodec,
    kind: Kind,
    path: Path,
    *,
    full: bool = False,
    allow_mass_delete: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Changes:
    """Read ``path`` (:class:`MasterFileError` if it has problems: nothing published),
    compare it with the topic, and publish the changes (none with ``dry_run``)."""
    wanted = kind.read(path, progress)
    if progress is not None:
        progress(f"{path.name}: {len(wanted)} {kind.name} read")
    changes = await plan(
        settings,
        codec,
        kind,
        wanted,
        full=full,
        allow_mass_delete=allow_mass_delete,
        progress=progress,
    )
    if not dry_run:
        await publish(settings, codec, kind, changes, progress)
    return changes


async def plan(
    settings: Settings,
    codec: AvroCodec,
    kind: Kind,
    wanted: dict[bytes, dict[str, Any]],
    *,
    full: bool = False,
    allow_mass_delete: bool = False,
    progress: Progress | None = None,
) -> Changes:
    """What publishing ``wanted`` would change on ``kind``'s topic (created if missing)."""
    await create_topics(settings, (kind.topic,))
    state = await read_topic(settings, codec, kind.topic.name, kind.content, progress)
    return compare(
        wanted, state.held, full=full, allow_mass_delete=allow_mass_delete, check=kind.check
    )


async def publish(
    settings: Settings,
    codec: AvroCodec,
    kind: Kind,
    changes: Changes,
    progress: Progress | None = None,
) -> int:
    """Produce ``changes`` to ``kind``'s topic and wait for every ack; the records sent."""
    event = kind.topic.schema
    assert event is not None
    now = datetime.now(UTC)
    producer = make_producer(settings, max_batch_size=BATCH_BYTES, linger_ms=20)
    try:  # a failed start is stopped too, not left unclosed
        await producer.start()
        sent: list[asyncio.Future[Any]] = []
        total = len(changes)
        for key, record in changes.upserts.items():
            value = codec.encode(
                event, {**record, "event_id": str(uuid.uuid4()), "published_at": now}
            )
            sent.append(await producer.send(kind.topic.name, value, key=key))
            _report(progress, kind, len(sent), total)
        for key in changes.deleted:
            sent.append(await producer.send(kind.topic.name, None, key=key))
            _report(progress, kind, len(sent), total)
        await asyncio.gather(*sent)
        return len(sent)
    finally:
        await producer.stop()


def _report(progress: Progress | None, kind: Kind, done: int, total: int) -> None:
    if progress is not None and done % PROGRESS_EVERY == 0:
        progress(f"{kind.topic.name}: {done} of {total} records sent")
