"""Running consumer services in tests: in-process tasks, and producing store events."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from consumers.runtime.api import Consumer
from consumers.runtime.db import Database
from consumers.runtime.runner import ConsumerService, RunnerConfig
from tillstream.codec import AvroCodec
from tillstream.kafka import make_producer
from tillstream.settings import Settings
from tillstream.topics import EVENT_TOPICS, store_key


async def publish(
    settings: Settings, codec: AvroCodec, events: list[tuple[str, dict[str, Any]]]
) -> None:
    """Publish ``(event type, record)`` pairs as an edge would (keyed by store, or customer)."""
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = []
        for event, record in events:
            key = (
                store_key(record["store_id"])
                if "store_id" in record
                else record["customer_id"].encode()
            )
            futures.append(
                await producer.send(EVENT_TOPICS[event].name, codec.encode(event, record), key=key)
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def running(
    consumer: Consumer, settings: Settings, db_url: str, **config: Any
) -> AsyncIterator[ConsumerService]:
    """A consumer service running as a task for the duration of the block."""
    service = ConsumerService(consumer, settings, RunnerConfig(db_url=db_url, **config))
    task = asyncio.create_task(service.run())
    try:
        yield service
    finally:
        service.request_stop()
        await asyncio.wait_for(task, timeout=60)


async def wait_until(
    condition: Callable[[], bool], *, timeout: float = 60, what: str = "condition"
) -> None:
    """Poll ``condition`` (may query a database) until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


def scalar(db_url: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """One value from a fresh connection (what an operator would see); None while the
    consumer has not created its tables yet."""
    db = Database(db_url)
    try:
        row = db.fetchone(sql, params)
    except Exception as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            return None
        raise
    finally:
        db.close()
    return None if row is None else row[0]
