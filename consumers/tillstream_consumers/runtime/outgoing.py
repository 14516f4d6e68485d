"""What a consumer service sends: dead letters, and the events its batches published
(queued in ``runtime_outbox`` with their effects, relayed once they commit).

The broker may refuse a record for good. One too large for its topic is set aside so the
records behind it still go: a published event into ``runtime_outbox_refused``, a dead letter
without its value (the record stays at its source). A broker that refuses the consumer
itself (not authorized) is the operator's to fix: published events stay queued and are
tried again every ``REFUSED_RETRY_SECONDS`` while consuming goes on; a dead letter cannot
wait like that, so the service stops (:class:`Refused`), skipping nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol, TypeVar

from tillstream_consumers.runtime import deadletter, metrics
from tillstream_consumers.runtime.applier import Applier
from tillstream_consumers.runtime.sender import Outbound, Sender
from tillstream_consumers.runtime.transient import KAFKA_REFUSED

log = logging.getLogger(__name__)
T = TypeVar("T")

REFUSED_RETRY_SECONDS = 30.0
"""How long queued events wait after the broker refused this consumer (not authorized)."""


class Refused(RuntimeError):
    """The broker refuses this consumer's dead letters, or its producer altogether (not
    authorized): stopping says so, where retrying for ever would hide it. The record stays
    unprocessed, so nothing is skipped."""


class Retrying(Protocol):
    """The service's retry loop: ``fn`` again after transient failures, with backoff."""

    async def __call__(self, what: str, fn: Callable[[], Awaitable[T]]) -> T: ...


class OnDatabase(Protocol):
    """The same for ``fn`` run on the service's database thread."""

    async def __call__(self, what: str, fn: Callable[[], T]) -> T: ...


class Outgoing:
    """Dead letters and published events of one consumer, sent through its :class:`Sender`."""

    def __init__(
        self,
        name: str,
        sender: Sender,
        retrying: Retrying,
        on_db: OnDatabase,
        applier: Callable[[], Applier],
    ) -> None:
        self.name = name
        for what in ("published", "dead_letter"):  # series at 0 from the start (alerts)
            for reason in ("too_large", "not_authorized"):
                metrics.SENDS_REFUSED.labels(name, what, reason)
        self._sender = sender
        self._retrying = retrying
        self._on_db = on_db
        self._applier = applier
        self._relay_paused_until = 0.0

    def retry_due(self) -> bool:
        """Whether publishing was refused a while ago and should be tried again now."""
        return bool(self._relay_paused_until) and time.monotonic() >= self._relay_paused_until

    async def dead_letter(self, msg: Any, reason: str, exc: BaseException) -> None:
        letter = deadletter.DeadLetter(
            consumer=self.name,
            reason=reason,
            error=deadletter.describe(exc),
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            at=deadletter.now(),
        )
        topic = deadletter.topic_for(self.name).name
        headers = tuple(letter.headers())
        try:
            (refused,) = await self._retrying(
                "send a dead letter",
                lambda: self._sender.send([Outbound(topic, msg.key, msg.value, headers)]),
            )
            if refused is not None:
                # Too large for the dead-letter topic: send where it came from and why; the
                # record itself stays in its source topic (dlq show names it).
                metrics.SENDS_REFUSED.labels(self.name, "dead_letter", "too_large").inc()
                log.error(
                    "%s: %s[%d]@%d is too large for %s (%s): dead letter sent without its value",
                    self.name, msg.topic, msg.partition, msg.offset, topic,
                    deadletter.describe(refused),
                )  # fmt: skip
                bare = tuple(dataclasses.replace(letter, value_omitted=True).headers())
                omitted = Outbound(topic, msg.key, b"", bare)
                (refused,) = await self._retrying(
                    "send a dead letter", lambda: self._sender.send([omitted])
                )
                if refused is not None:
                    raise refused
        except KAFKA_REFUSED as exc:
            metrics.SENDS_REFUSED.labels(self.name, "dead_letter", "not_authorized").inc()
            raise Refused(
                f"{self.name}: the broker refuses dead letters on {topic} "
                f"({deadletter.describe(exc)}): grant this consumer WRITE on it "
                "(tillstream acls show); nothing was skipped"
            ) from exc
        metrics.DLQ.labels(self.name, reason).inc()
        metrics.FAILURES.labels(self.name, "permanent").inc()
        metrics.RECORDS.labels(self.name, msg.topic, "dead_lettered").inc()
        log.error(
            "%s: dead-lettered %s[%d]@%d (%s): %s",
            self.name,
            msg.topic,
            msg.partition,
            msg.offset,
            reason,
            letter.error,
        )

    async def publish(self) -> None:
        """Send what batches published (queued in their transactions), then forget it.

        An event too large for its topic is set aside (``runtime_outbox_refused``) so the ones
        behind it go out. If the broker refuses this consumer (not authorized), the events
        stay queued and are tried again every ``REFUSED_RETRY_SECONDS``; consuming goes on.
        """
        if time.monotonic() < self._relay_paused_until:
            return
        applier = self._applier()
        while pending := await self._on_db("read queued events", applier.pending_outgoing):
            rows = [Outbound(t, k, v) for _, t, k, v in pending]
            try:
                results = await self._retrying("publish events", partial(self._sender.send, rows))
            except KAFKA_REFUSED as exc:
                self._relay_paused_until = time.monotonic() + REFUSED_RETRY_SECONDS
                metrics.SENDS_REFUSED.labels(self.name, "published", "not_authorized").inc()
                log.error(
                    "%s: the broker refuses the events this consumer publishes (%s); "
                    "%d or more stay queued, next try in %.0fs",
                    self.name, deadletter.describe(exc), len(pending), REFUSED_RETRY_SECONDS,
                )  # fmt: skip
                return
            self._relay_paused_until = 0.0
            sent = [row[0] for row, error in zip(pending, results, strict=True) if error is None]
            await self._on_db("forget sent events", partial(applier.forget_outgoing, sent))
            at = deadletter.now().isoformat()
            refused = [
                (row[0], at, deadletter.describe(error))
                for row, error in zip(pending, results, strict=True)
                if error is not None
            ]
            if refused:
                await self._on_db(
                    "set refused events aside", partial(applier.set_aside_outgoing, refused)
                )
                for (_, topic, _, value), error in zip(pending, results, strict=True):
                    if error is not None:
                        metrics.SENDS_REFUSED.labels(self.name, "published", "too_large").inc()
                        log.error(
                            "%s: an event of %d bytes is too large for %s (%s); set aside "
                            "in runtime_outbox_refused",
                            self.name, len(value), topic, deadletter.describe(error),
                        )  # fmt: skip
