"""What a consumer believes: a decoded record reaches ``apply`` only if it is the event type
its topic carries and keeps every rule of ``tillstream.core.rules``.

An edge refuses what breaks the rules; a record written to Kafka another way (another
producer, a tool, a bug) is held to the same rules here, once per record as a batch is
decoded (``fetching.py``), so every consumer gets the check without a line of its own. One
that fails is dead-lettered, never applied: ``broken-rule`` naming each rule (field and
limit, never the value), ``card-number`` (a string holding a card number: its dead letter
goes without its value, so the number is not copied once more), or ``wrong-topic`` (a
payment on the sales topic: the audit's per-topic read marks, and every consumer's
``record.event`` dispatch, assume each topic carries its own type). Every string is held to
the identifier and free-text rules of every channel (``tillstream.core.identifiers``: no
card number, no control character). Tombstones of compacted topics are not events: they
pass.
"""

from __future__ import annotations

from collections.abc import Mapping

from tillstream.core.identifiers import CARD_NUMBER, field_problem
from tillstream.core.rules import event_problems
from tillstream.core.topics import ALL_TOPICS
from tillstream_consumers.runtime.api import PermanentError, Record

BROKEN_RULE = "broken-rule"
"""Dead-letter reason: the record breaks a rule of ``tillstream.core.rules``."""
CARD_NUMBER_HELD = "card-number"
"""Dead-letter reason: a string of the record holds a card number (the letter omits it)."""
WRONG_TOPIC = "wrong-topic"
"""Dead-letter reason: the record is another event type than its topic carries."""

TOPIC_EVENTS: Mapping[str, str] = {t.name: t.schema for t in ALL_TOPICS if t.schema}
"""Each tillstream topic's event type (``TopicSpec.schema``). Other topics (a consumer of
your own reading a topic of yours) are not checked for it."""


class Unbelievable(PermanentError):
    """A record no consumer may apply: ``reason`` (:data:`BROKEN_RULE`, :data:`WRONG_TOPIC`)
    and ``rules``, the fields of the rules it breaks (``topic`` for a wrong topic), go into
    its dead letter's headers."""

    def __init__(self, reason: str, rules: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.rules = rules

    @property
    def omit_value(self) -> bool:
        """The record must not be copied into its dead letter (it holds a card number)."""
        return self.reason == CARD_NUMBER_HELD


def unbelievable(record: Record) -> Unbelievable | None:
    """Why ``record`` must not be applied, or None."""
    if record.tombstone:
        return None
    carried = TOPIC_EVENTS.get(record.topic)
    if carried is not None and record.event != carried:
        return Unbelievable(
            WRONG_TOPIC,
            ("topic",),
            f"{record.topic} carries {carried} events, not {record.event}: its producer "
            f"wrote it to the wrong topic",
        )
    held = field_problem(record.value)
    if held is not None and held[1].kind == CARD_NUMBER:
        field, problem = held
        return Unbelievable(
            CARD_NUMBER_HELD, (field,), f"{record.event}: {field}: {problem.message}"
        )
    problems = event_problems(record.event, record.value)
    if held is not None:
        problems = [(held[0], held[1].message), *problems]
    if not problems:
        return None
    fields = tuple(dict.fromkeys(field for field, _ in problems))
    named = "; ".join(f"{field}: {message}" for field, message in problems)
    return Unbelievable(BROKEN_RULE, fields, f"{record.event}: {named}")
