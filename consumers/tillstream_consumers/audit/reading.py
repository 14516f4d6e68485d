"""What the audit has not read *yet*: how far each store's sales, payments and till events
were read, so a check never flags what is only still on its way.

Sales, payments and till events travel on three topics, and a consumer reads each at its
own pace: one that catches up (after a stop, a rebuild) may read a day's payments and its
close long before its sales. The edge publishes a store's events in order (a sale before
its payments, a till's declaration after the payments it counts), each topic keeps a
store's events in that order on one partition, and each event carries when it was
published (its Kafka timestamp). So once the audit has read a store's event of one type
published after some moment, it has read every event of that type the store published
before it. A check that needs the events of another topic up to a moment waits until that
topic was read past it (:func:`read_past`); its store-day is audited again meanwhile.

A finding waits at most :data:`HOLD_SECONDS`: the other topic may simply have nothing
newer (a till's count is the last thing it sends for the day, and no payment follows it
until tomorrow). A consumer that reads one topic ahead of another is ahead by what one
fetch holds, seconds of work, not more. Once the day is over (local midnight plus the
close grace) nothing waits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tillstream_consumers.runtime.db import Database

HOLD_SECONDS = 30.0
"""The longest a finding waits for another topic to be read past it."""

ReadMarks = Mapping[str, int]
"""Event type (``sale``, ``payment``, ``till_event``) -> the newest publication time
(Kafka timestamp, milliseconds) of the store's events of that type read so far."""


def read_past(read: ReadMarks | None, event: str, published_ms: int | None) -> bool:
    """Whether the store's events of type ``event`` were read past ``published_ms``: one
    published after it was read. Nothing waits with no marks (None: the day is over, or
    it waited long enough), nor for a fact stored before publication times were kept."""
    if read is None or published_ms is None:
        return True
    mark = read.get(event)
    return mark is not None and mark > published_ms


def note_read(db: Database, read: Iterable[tuple[str, str, int]]) -> None:
    """Move the marks to the newest of ``(store, event type, publication time)``."""
    newest: dict[tuple[str, str], int] = {}
    for store, event, published_ms in read:
        newest[(store, event)] = max(published_ms, newest.get((store, event), published_ms))
    db.insert_many(
        "audit_read",
        ("store_id", "event", "published_ms"),
        [(store, event, ms) for (store, event), ms in sorted(newest.items())],
        "ON CONFLICT (store_id, event) DO UPDATE SET published_ms = CASE WHEN "
        "excluded.published_ms > audit_read.published_ms THEN excluded.published_ms "
        "ELSE audit_read.published_ms END",
    )


def read_marks(db: Database, store_id: str) -> dict[str, int]:
    """How far ``store_id``'s events of each type were read."""
    return {
        str(event): int(ms)
        for event, ms in db.fetchall(
            "SELECT event, published_ms FROM audit_read WHERE store_id = ?", (store_id,)
        )
    }
