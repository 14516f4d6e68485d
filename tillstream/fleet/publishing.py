"""Publishing head office's desired state: only what changes, each target's version the one
before plus one, who decided it in every record.

:func:`plan` compares the changes with the topic (:mod:`tillstream.fleet.topic`) and keeps
those that change something; :func:`publish` produces them (``estate_key`` keys, a fresh
``change_id`` each, one ``published_at`` for the run) with the project's idempotent producer
and returns once every record is acknowledged. :func:`decide` does both, for the command
line and the fleet page alike.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import create_topics, make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import ESTATE_DESIRED, estate_key
from tillstream.fleet.desired import Change, Payload, merged, same
from tillstream.fleet.topic import DesiredState, read_desired


@dataclass(frozen=True)
class Planned:
    """A record to publish: the target's next version, or its tombstone."""

    store_id: str
    target: str
    version: int
    payload: Payload | None
    """None: a tombstone."""

    @property
    def what(self) -> str:
        return "cleared" if self.payload is None else f"version {self.version}"


def plan(changes: Sequence[Change], state: DesiredState) -> list[Planned]:
    """The records that change the topic: a payload other than the target's current one, a
    tombstone of a target that holds one."""
    planned: list[Planned] = []
    for change in changes:
        current = state.current(change.key)
        payload = merged(change, current.payload if current else None)
        if payload is None and (current is None or current.payload is None):
            continue  # nothing to clear
        if current is not None and same(payload, current.payload):
            continue
        version = (current.version if current else 0) + 1
        if payload is None:
            version -= 1  # a tombstone carries no version; the next record is one more
        planned.append(Planned(change.store_id, change.target, version, payload))
    return planned


async def publish(
    settings: Settings,
    codec: AvroCodec,
    planned: Sequence[Planned],
    published_by: str,
    now: datetime | None = None,
) -> int:
    """Produce ``planned`` to ``tillstream.estate-desired`` and wait for every ack."""
    if not planned:
        return 0
    at = now or datetime.now(UTC)
    producer = make_producer(settings)
    try:  # a failed start is stopped too, not left unclosed
        await producer.start()
        sent: list[asyncio.Future[Any]] = []
        for p in planned:
            value = None if p.payload is None else codec.encode(
                "estate_desired",
                {
                    "change_id": str(uuid.uuid4()),
                    "store_id": p.store_id,
                    "target": p.target,
                    "version": p.version,
                    "published_at": at,
                    "published_by": published_by,
                    **p.payload,
                },
            )  # fmt: skip
            key = estate_key(p.store_id, p.target)
            sent.append(await producer.send(ESTATE_DESIRED.name, value, key=key))
        await asyncio.gather(*sent)
        return len(sent)
    finally:
        await producer.stop()


async def decide(
    settings: Settings,
    codec: AvroCodec,
    changes: Sequence[Change],
    published_by: str,
    *,
    dry_run: bool = False,
    whole_topic: bool = True,
) -> list[Planned]:
    """Read the topic (whole, or only the partitions of ``changes``' keys), plan and publish
    (nothing with ``dry_run``); returns what was (or would be) published."""
    await create_topics(settings, (ESTATE_DESIRED,))
    keys = None if whole_topic else [c.key for c in changes]
    state = await read_desired(settings, codec, keys)
    planned = plan(changes, state)
    if not dry_run:
        await publish(settings, codec, planned, published_by)
    return planned
