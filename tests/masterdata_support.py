"""Helpers of the master-data tests: writing item and price files, running ``items|prices
publish`` in process, and reading what the compacted topics hold."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from click.testing import CliRunner, Result

from tillstream.cli import main
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_consumer
from tillstream.core.settings import Settings
from tillstream.masterdata import items_csv, prices_csv
from tillstream.masterdata.topic_state import read_topic

ITEMS_HEADER = (
    "sku,gtins,description,unit_of_measure,weighed,stock_item,reorder_point,lead_time_days"
)
PRICES_HEADER = "sku,store_id,amount,currency,valid_from,valid_until"


def write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def item_row(n: int, description: str | None = None, reorder_point: str = "5") -> str:
    return f"SKU-{n:06d},,{description or f'Item {n}'},EA,false,true,{reorder_point},3"


def publish(settings: Settings, what: str, *args: str) -> Result:
    """``tillstream <what> publish ARGS`` against the test broker."""
    env = {
        "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TILLSTREAM_TOPIC_PARTITIONS": str(settings.topic_partitions),
    }
    return CliRunner().invoke(main, [what, "publish", *args], env=env)


def clear(settings: Settings, tmp_path: Path) -> None:
    """Tombstone everything both topics hold (a full publish of empty files)."""
    for what, header in (("items", ITEMS_HEADER), ("prices", PRICES_HEADER)):
        empty = write(tmp_path / f"empty-{what}.csv", header, [])
        result = publish(settings, what, str(empty), "--full", "--allow-mass-delete")
        assert result.exit_code == 0, result.output


def end_offsets(settings: Settings, topic: str) -> int:
    """The sum of the topic's end offsets: grows by one per record published."""

    async def ends() -> int:
        consumer = make_consumer(settings, group_id=None)
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            parts = [TopicPartition(topic, p) for p in cluster.partitions_for_topic(topic) or ()]
            return sum((await consumer.end_offsets(parts)).values())
        finally:
            await consumer.stop()

    return asyncio.run(ends())


def held(settings: Settings, codec: AvroCodec, what: str) -> dict[bytes, dict[str, Any] | None]:
    """What the topic holds now, by key."""
    topic, content = {
        "items": ("tillstream.items", items_csv.CONTENT),
        "prices": ("tillstream.prices", prices_csv.CONTENT),
    }[what]
    return asyncio.run(read_topic(settings, codec, topic, content)).held
