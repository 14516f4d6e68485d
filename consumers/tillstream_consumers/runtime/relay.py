"""The outgoing relay: events a consumer's batches published, queued in ``runtime_outbox``
with their effects, sent to Kafka once they commit and then forgotten.

An event the broker refuses as too large for its topic is set aside in
``runtime_outbox_refused`` so the events behind it still go. A broker that refuses the
consumer itself (not authorized) is the operator's to fix: the events stay queued and are
tried again every ``REFUSED_RETRY_SECONDS`` while consuming goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

from tillstream_consumers.runtime import deadletter, metrics
from tillstream_consumers.runtime.applier import Applier
from tillstream_consumers.runtime.retrying import RetryPolicy
from tillstream_consumers.runtime.sender import Outbound, Sender
from tillstream_consumers.runtime.transient import KAFKA_REFUSED

log = logging.getLogger(__name__)

REFUSED_RETRY_SECONDS = 30.0
"""How long queued events wait after the broker refused this consumer (not authorized)."""


class Relay:
    """Sends the events one consumer published, through its :class:`Sender`."""

    def __init__(
        self, name: str, sender: Sender, retry: RetryPolicy, applier: Callable[[], Applier]
    ) -> None:
        self.name = name
        for reason in ("too_large", "not_authorized"):  # series at 0 from the start (alerts)
            metrics.SENDS_REFUSED.labels(name, "published", reason)
        self._sender = sender
        self._retry = retry
        self._applier = applier
        self._paused_until = 0.0

    def retry_due(self) -> bool:
        """Whether publishing was refused a while ago and should be tried again now."""
        return bool(self._paused_until) and time.monotonic() >= self._paused_until

    async def publish(self) -> None:
        """Send what batches published (queued in their transactions), then forget it.

        An event too large for its topic is set aside (``runtime_outbox_refused``) so the ones
        behind it go out. If the broker refuses this consumer (not authorized), the events
        stay queued and are tried again every ``REFUSED_RETRY_SECONDS``; consuming goes on.
        """
        if time.monotonic() < self._paused_until:
            return
        applier = self._applier()
        on_db = self._retry.on_db_retrying
        while pending := await on_db("read queued events", applier.pending_outgoing):
            rows = [Outbound(t, k, v) for _, t, k, v in pending]
            try:
                results = await self._retry.retrying(
                    "publish events", partial(self._sender.send, rows)
                )
            except KAFKA_REFUSED as exc:
                self._paused_until = time.monotonic() + REFUSED_RETRY_SECONDS
                metrics.SENDS_REFUSED.labels(self.name, "published", "not_authorized").inc()
                log.error(
                    "%s: the broker refuses the events this consumer publishes (%s); "
                    "%d or more stay queued, next try in %.0fs",
                    self.name, deadletter.describe(exc), len(pending), REFUSED_RETRY_SECONDS,
                )  # fmt: skip
                return
            self._paused_until = 0.0
            sent = [row[0] for row, error in zip(pending, results, strict=True) if error is None]
            await on_db("forget sent events", partial(applier.forget_outgoing, sent))
            at = deadletter.now().isoformat()
            refused = [
                (row[0], at, deadletter.describe(error))
                for row, error in zip(pending, results, strict=True)
                if error is not None
            ]
            if refused:
                aside = partial(applier.set_aside_outgoing, refused)
                await on_db("set refused events aside", aside)
                for (_, topic, _, value), error in zip(pending, results, strict=True):
                    if error is not None:
                        metrics.SENDS_REFUSED.labels(self.name, "published", "too_large").inc()
                        log.error(
                            "%s: an event of %d bytes is too large for %s (%s); set aside "
                            "in runtime_outbox_refused",
                            self.name, len(value), topic, deadletter.describe(error),
                        )  # fmt: skip
