"""Applying a fetched batch under the retry policy, and counting what it came to.

The batch goes to the :class:`Applier` in one transaction; a transient failure is retried
on the same batch (it rolled back). A batch that fails otherwise is applied record by
record, and the records that still fail are dead-lettered (``invalid`` for a
:class:`PermanentError`, ``handler-error`` for anything else) and stepped over.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from functools import partial

from tillstream_consumers.runtime import deadletter, metrics
from tillstream_consumers.runtime.api import PermanentError
from tillstream_consumers.runtime.applier import Applier, BatchOutcome
from tillstream_consumers.runtime.deadletter_sender import DeadLetterSender
from tillstream_consumers.runtime.fetching import Fetched
from tillstream_consumers.runtime.retrying import RetryPolicy, Stopping

log = logging.getLogger(__name__)


class BatchApplying:
    """Applies one consumer's batches exactly once, setting aside what can never apply."""

    def __init__(
        self,
        name: str,
        applier: Callable[[], Applier],
        retry: RetryPolicy,
        dead_letters: DeadLetterSender,
    ) -> None:
        self.name = name
        self._applier = applier
        self._retry = retry
        self._dead_letters = dead_letters

    async def apply(self, fetched: Fetched) -> BatchOutcome:
        """Apply ``fetched.records`` and store ``fetched.positions``; raises only
        :class:`Stopping` (or what stops the service: a refused dead letter)."""
        applier = self._applier()
        try:
            return await self._retry.on_db_retrying(
                "apply a batch", lambda: applier.apply(fetched.records, fetched.positions)
            )
        except Stopping:
            raise
        except Exception as exc:
            log.warning(
                "%s: batch failed (%s); applying record by record",
                self.name,
                deadletter.describe(exc),  # never the raw error: it may quote a record
            )
            return await self._one_by_one(fetched)

    async def _one_by_one(self, fetched: Fetched) -> BatchOutcome:
        applier = self._applier()
        retrying = self._retry.on_db_retrying
        total = BatchOutcome()
        for record in fetched.records:
            step = {record.topic_partition: record.offset + 1}
            try:
                one = await retrying("apply a record", partial(applier.apply, [record], step))
            except Stopping:
                raise
            except Exception as exc:
                reason = "invalid" if isinstance(exc, PermanentError) else "handler-error"
                await self._dead_letters.send(fetched.message_of(record), reason, exc)
                await retrying("skip a dead letter", partial(applier.advance, step))
                continue
            total.add(one)
        await retrying("store offsets", lambda: applier.advance(fetched.positions))
        return total


def account(name: str, outcome: BatchOutcome, started: float) -> None:
    """Metrics of a committed batch that arrived at ``started`` (``time.perf_counter()``).
    Counted per topic and observed through one child: a batch holds hundreds of records."""
    now = time.time()
    for (topic, outcome_name), n in Counter(
        [(r.topic, "applied") for r in outcome.applied]
        + [(r.topic, "duplicate") for r in outcome.duplicates]
    ).items():
        metrics.RECORDS.labels(name, topic, outcome_name).inc(n)
    latency = metrics.EVENT_LATENCY.labels(name)
    for record in outcome.applied:
        latency.observe(max(0.0, now - record.timestamp_ms / 1000))
    if outcome.applied:
        last = max(r.timestamp_ms for r in outcome.applied)
        metrics.LAST_EVENT_TIME.labels(name).set(last / 1000)
    metrics.BATCH_SIZE.labels(name).observe(len(outcome.applied) + len(outcome.duplicates))
    metrics.BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)
