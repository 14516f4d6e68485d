"""Sending dead letters: a record the consumer can never apply goes to
``tillstream.dlq.<name>`` with headers saying why (``deadletter.py``), and the consumer
moves on.

A record too large for the dead-letter topic goes without its value (it stays at its
source). A broker that refuses this consumer's dead letters (not authorized) stops the
service (:class:`Refused`): the record stays unprocessed, so nothing is skipped.
"""

from __future__ import annotations

import dataclasses
import logging

from tillstream_consumers.runtime import deadletter, metrics
from tillstream_consumers.runtime.fetching import Message
from tillstream_consumers.runtime.retrying import RetryPolicy
from tillstream_consumers.runtime.sender import Outbound, Refused, Sender
from tillstream_consumers.runtime.transient import KAFKA_REFUSED

log = logging.getLogger(__name__)


class DeadLetterSender:
    """Dead letters of one consumer, sent through its :class:`Sender`."""

    def __init__(self, name: str, sender: Sender, retry: RetryPolicy) -> None:
        self.name = name
        self.topic = deadletter.topic_for(name).name
        for reason in ("too_large", "not_authorized"):  # series at 0 from the start (alerts)
            metrics.SENDS_REFUSED.labels(name, "dead_letter", reason)
        self._sender = sender
        self._retry = retry

    async def send(
        self,
        msg: Message,
        reason: str,
        exc: BaseException,
        *,
        rules: tuple[str, ...] = (),
        omit_value: bool = False,
    ) -> None:
        """Set ``msg`` aside for ``reason`` (``undecodable``, ``broken-rule``, ``card-number``,
        ``wrong-topic``, ``invalid``, ``handler-error``); ``rules``: the fields of the core
        rules it breaks; ``omit_value``: the letter goes without the record's value (a card
        number is not copied once more: the record stays at its source offset)."""
        letter = deadletter.DeadLetter(
            consumer=self.name,
            reason=reason,
            error=deadletter.describe(exc),
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            at=deadletter.now(),
            rule=",".join(rules) or None,
            value_omitted=deadletter.CARD_NUMBER_OMITTED if omit_value else None,
        )
        topic = self.topic
        value = b"" if omit_value else msg.value
        headers = tuple(letter.headers())
        try:
            (refused,) = await self._retry.retrying(
                "send a dead letter",
                lambda: self._sender.send([Outbound(topic, msg.key, value, headers)]),
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
                bare = tuple(
                    dataclasses.replace(letter, value_omitted=deadletter.TOO_LARGE).headers()
                )
                omitted = Outbound(topic, msg.key, b"", bare)
                (refused,) = await self._retry.retrying(
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
