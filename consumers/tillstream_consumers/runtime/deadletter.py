"""Dead letters: records a consumer can never apply, set aside on ``tillstream.dlq.<name>``.

A dead letter keeps the original key and value bytes and says why in its headers, so it can
be read (``tillstream dlq show``) and sent back to its source topic after a fix
(``tillstream dlq replay``). Error texts are cut short and scrubbed of what could be record
contents (see :func:`redact_error_text`): card data and personal data stay out of headers and logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tillstream.core.topics import TopicSpec

PREFIX = "tillstream.dlq."
MAX_ERROR_CHARS = 500
# Card, phone and account numbers: 7+ digits, maybe grouped ("+49 221 555 0100").
_DIGIT_RUN = re.compile(r"\+?\d(?:[ ()./-]{0,2}\d){6,}")
_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
# What a quoted field name, event type or enum value looks like; anything else is a value.
_NAME_LIKE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")

H_ERROR = "dlq.error"
H_REASON = "dlq.reason"
H_TOPIC = "dlq.source.topic"
H_PARTITION = "dlq.source.partition"
H_OFFSET = "dlq.source.offset"
H_CONSUMER = "dlq.consumer"
H_TIME = "dlq.time"
H_RULE = "dlq.rule"
"""The fields of the core rules a record breaks (``business_day,currency``), or ``topic`` for
one on the wrong topic (reasons ``broken-rule``, ``wrong-topic``)."""
H_VALUE_OMITTED = "dlq.value-omitted"
"""Set when the letter carries an empty value, with why (:data:`TOO_LARGE`,
:data:`CARD_NUMBER_OMITTED`); the record is still at its source topic, partition and
offset."""
TOO_LARGE = "too-large"
"""Too large for the dead-letter topic."""
CARD_NUMBER_OMITTED = "card-number"
"""It holds a card number: never copied."""
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
    """``undecodable``, ``broken-rule`` or ``wrong-topic`` (``validity.py``), ``invalid``
    (PermanentError) or ``handler-error``."""
    error: str
    topic: str
    partition: int
    offset: int
    at: datetime
    value_omitted: str | None = None
    """Why the letter's value is empty (see H_VALUE_OMITTED): :data:`TOO_LARGE` for the
    dead-letter topic, :data:`CARD_NUMBER_OMITTED` (never copied); None: it is the record's."""
    rule: str | None = None
    """The rules broken, by field (see H_RULE); None for other reasons."""

    def headers(self) -> list[tuple[str, bytes]]:
        rule = [(H_RULE, redact_error_text(self.rule).encode())] if self.rule else []
        omitted = [(H_VALUE_OMITTED, self.value_omitted.encode())] if self.value_omitted else []
        return [
            (H_ERROR, redact_error_text(self.error).encode()),
            (H_REASON, self.reason.encode()),
            (H_TOPIC, self.topic.encode()),
            (H_PARTITION, str(self.partition).encode()),
            (H_OFFSET, str(self.offset).encode()),
            (H_CONSUMER, self.consumer.encode()),
            (H_TIME, self.at.isoformat().encode()),
            *rule,
            *omitted,
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
                value_omitted=h.get(H_VALUE_OMITTED),
                rule=h.get(H_RULE),
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"not a tillstream dead letter: header {exc} missing or bad") from None


def describe(exc: BaseException) -> str:
    """An error text for headers and logs: the type and the first line of the message,
    redacted and cut short (database drivers quote row values on the lines after it, e.g.
    PostgreSQL's ``DETAIL: Key (customer_id)=(...)``)."""
    lines = str(exc).strip().splitlines()
    return redact_error_text(f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": "))


def redact_error_text(text: str) -> str:
    """``text`` on one line, cut short, without what may be a record's contents: e-mail
    addresses, runs of 7+ digits (card, phone, account numbers) and quoted values other
    than names of fields or types (a customer's name quoted by ``repr``). A handler should
    not put record values in its messages; this catches what it does by mistake."""
    text = " ".join(text.split())
    text = _EMAIL.sub("[email]", text)
    text = _QUOTED.sub(_keep_names, text)
    return _DIGIT_RUN.sub("[digits]", text)[:MAX_ERROR_CHARS]


def _keep_names(match: re.Match[str]) -> str:
    quoted = match.group()
    return quoted if _NAME_LIKE.match(quoted[1:-1]) else "[value]"


def now() -> datetime:
    return datetime.now(UTC)
