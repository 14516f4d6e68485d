"""Small helpers for tests (not fixtures)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord


def normalized(record: Any) -> Any:
    """A record with UUIDs as strings, so sent and decoded records compare equal."""
    if isinstance(record, dict):
        return {k: normalized(v) for k, v in record.items()}
    if isinstance(record, list):
        return [normalized(v) for v in record]
    if isinstance(record, uuid.UUID):
        return str(record)
    return record


async def consume_n(
    consumer: AIOKafkaConsumer, n: int, timeout: float = 30.0
) -> list[ConsumerRecord[Any, Any]]:
    """Exactly the next ``n`` messages (fails on timeout)."""
    got: list[ConsumerRecord[Any, Any]] = []
    async with asyncio.timeout(timeout):
        while len(got) < n:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(messages)
    return got
