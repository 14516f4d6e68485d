"""The runtime's own producer, for dead letters and the events consumers publish.

A record the broker refuses as too large must not hold up the ones behind it. It also
leaves aiokafka's idempotent producer out of sequence on that partition (every later send
there fails with ``OutOfOrderSequenceNumber``), so after such a refusal the sender starts
a fresh producer (a new producer id) before it sends anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from tillstream.core.kafka import make_producer
from tillstream.core.settings import Settings
from tillstream_consumers.runtime.transient import KAFKA_TOO_LARGE

log = logging.getLogger(__name__)

# The producer's sequence state is broken: only a new producer id sends again.
_BROKEN_PRODUCER = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    ProducerFenced,
)
_SUSPECT = KAFKA_TOO_LARGE + _BROKEN_PRODUCER


class Refused(RuntimeError):
    """The broker refuses this consumer's dead letters, or its producer altogether (not
    authorized): stopping says so, where retrying for ever would hide it. The record stays
    unprocessed, so nothing is skipped."""


@dataclass(frozen=True, slots=True)
class Outbound:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class Sender:
    """Sends records; a record too large for its topic is reported, not retried."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is None:
            producer = make_producer(self.settings)
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(KafkaError, OSError, TimeoutError):
                    await asyncio.wait_for(producer.stop(), timeout=15)
                raise
            self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(producer.stop(), timeout=15)

    async def send(self, records: Sequence[Outbound]) -> list[KafkaError | None]:
        """Send ``records``; for each, None (sent) or the error that refused it as too large.

        Any other failure raises (retry the whole call: records already sent go again, and
        their readers drop the copies by event id). Raises the refusal of a client that may
        not write the topic, too: that is for the operator to fix, not for a record.
        """
        results = await self._send_all(records)
        suspects = [i for i, r in enumerate(results) if isinstance(r, _SUSPECT)]
        if suspects:
            await self._restart()
        # One at a time on a fresh producer: records batched with a too-large one, or sent
        # behind it on its partition, were refused with it and now go through; only the
        # records really over the limit stay refused.
        for i in suspects:
            (results[i],) = await self._send_all([records[i]])
            if results[i] is not None:
                await self._restart()
        others = [r for r in results if r is not None and not isinstance(r, KAFKA_TOO_LARGE)]
        if others:
            raise others[0]
        return results

    async def _send_all(self, records: Sequence[Outbound]) -> list[KafkaError | None]:
        await self.start()
        assert self._producer is not None
        futures: list[asyncio.Future[object] | KafkaError] = []
        for r in records:
            try:
                futures.append(
                    await self._producer.send(
                        r.topic, r.value, key=r.key, headers=list(r.headers) or None
                    )
                )
            except KAFKA_TOO_LARGE as exc:  # over the client's own max_request_size
                futures.append(exc)
        results: list[KafkaError | None] = []
        for f in futures:
            if isinstance(f, KafkaError):
                results.append(f)
                continue
            try:
                await f
            except KafkaError as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    async def _restart(self) -> None:
        log.info("starting a fresh producer after a refused send")
        await self.stop()
        await self.start()
