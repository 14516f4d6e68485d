"""What the edge's offline commands share: the store's item copy and the topics' limits."""

from __future__ import annotations

import asyncio

import click
from aiokafka.errors import KafkaError

from tillstream.core.settings import Settings
from tillstream.core.topics import STORE_TOPICS
from tillstream_edge.limits import RecordLimits, read_topic_limits
from tillstream_edge.masterdata_copy import MasterDataCopy, copy_from_settings, masterdata_path


async def item_copy(cfg: Settings) -> MasterDataCopy | None:
    """The store's item copy (kept by its edge service), to mark sales as the edge does:
    lines of items head office keeps no stock of. None, said once, if there is none."""
    path = masterdata_path(cfg)
    if not path.exists():
        click.echo(f"no item copy at {path}: sales imported as sent")
        return None
    copy = copy_from_settings(cfg)
    try:
        await copy.open()
    except Exception as exc:  # as the edge does: a damaged copy never stops sales
        click.echo(f"the item copy at {path} cannot be opened ({exc}): sales imported as sent")
        await copy.close()
        return None
    return copy


async def record_limits(cfg: Settings) -> RecordLimits:
    """The topics' record limits from the broker; Kafka's defaults if it cannot be asked."""
    limits = RecordLimits(cfg.kafka_max_request_bytes)
    try:
        topics = [t.name for t in STORE_TOPICS]
        limits.topic_bytes.update(await asyncio.wait_for(read_topic_limits(cfg, topics), 10))
    except (KafkaError, OSError, TimeoutError):
        pass  # offline backfill: the defaults apply, the forwarder quarantines the rest
    return limits
