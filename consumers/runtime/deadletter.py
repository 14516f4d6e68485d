"""Dead letters: records a consumer can never apply, set aside on ``tillstream.dlq.<name>``.

A dead letter keeps the original key and value bytes and says why in its headers, so it can
be read (``tillstream dlq show``) and sent back to its source topic after a fix
(``tillstream dlq replay``). Error texts are cut short and never include record contents:
card data and personal data stay out of headers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tillstream.topics import TopicSpec

PREFIX = "tillstream.dlq."
MAX_ERROR_CHARS = 500
_DIGIT_RUN = re.compile(r"\d(?:[ -]?\d){11,}")

H_ERROR = "dlq.error"
H_REASON = "dlq.reason"
H_TOPIC = "dlq.source.topic"
H_PARTITION = "dlq.source.partition"
H_OFFSET = "dlq.source.offset"
H_CONSUMER = "dlq.consumer"
H_TIME = "dlq.time"
H_REPLAYED = "tillstream.replayed-from"
"""Set on a record sent back by ``dlq replay``: ``<dlq topic>/<partition>/<offset>``."""


def topic_for(consumer: str) -> TopicSpec:
    """The dead-letter topic of a consumer (kept 30 days, like its sources)."""
    return TopicSpec(
        f"{PREFIX}{consumer}",
        None,
        {"retention.ms": str(30 * 24 * 3600 * 1000), "unclean.leader.election.enable": "false"},
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a record was set aside, and where it came from."""

    consumer: str
    reason: str
    """``undecodable``, ``invalid`` (PermanentError) or ``handler-error``."""
    error: str
    topic: str
    partition: int
    offset: int
    at: datetime

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (H_ERROR, self.error[:MAX_ERROR_CHARS].encode()),
            (H_REASON, self.reason.encode()),
            (H_TOPIC, self.topic.encode()),
            (H_PARTITION, str(self.partition).encode()),
            (H_OFFSET, str(self.offset).encode()),
            (H_CONSUMER, self.consumer.encode()),
            (H_TIME, self.at.isoformat().encode()),
        ]

    @classmethod
    def from_headers(cls, headers: Any) -> DeadLetter:
        h = {k: v.decode(errors="replace") for k, v in headers or ()}
        try:
            return cls(
                consumer=h[H_CONSUMER],
                reason=h.get(H_REASON, "unknown"),
                error=h.get(H_ERROR, ""),
                topic=h[H_TOPIC],
                partition=int(h[H_PARTITION]),
                offset=int(h[H_OFFSET]),
                at=datetime.fromisoformat(h[H_TIME]),
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"not a tillstream dead letter: header {exc} missing or bad") from None


def describe(exc: BaseException) -> str:
    """An error text for headers and logs: the type and message, one line, cut short."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    # A handler's message might quote a field: long digit runs could be card numbers.
    return _DIGIT_RUN.sub("[digits]", text)[:MAX_ERROR_CHARS]


def now() -> datetime:
    return datetime.now(UTC)
