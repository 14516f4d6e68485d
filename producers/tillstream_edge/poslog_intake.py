"""The POSLog path of every channel (upload, drop folder, import, set-aside retry).

A document is converted transaction by transaction (``tillstream_edge.poslog``); each
converted transaction's events pass the edge's rules (``Ingestor.encode``) as one unit. A
transaction the converter cannot read, or whose events the edge refuses (a rule, a card
number in a field, its size, an event id taken by other content), is set aside: kept in the
outbox with its reason, beside its document's other events, in one SQLite transaction
(``tillstream_edge.set_aside``). A 202 or a processed file means all of it is on disk.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tillstream_edge import metrics
from tillstream_edge.ingest import Accepted, IngestError, Ingestor, count_accepted, count_refusal
from tillstream_edge.outbox import OutboxEvent, Outcome, Unit
from tillstream_edge.poslog import (
    Converted,
    PoslogError,
    PoslogResult,
    SetAside,
    Skipped,
    parse_poslog,
)
from tillstream_edge.poslog_kinds import MAX_LISTED
from tillstream_edge.set_aside import SetAsideRow

MAX_POSLOG_BYTES = 20 * 1024 * 1024
"""The largest document over HTTP (the drop folder takes its own)."""


@dataclass(frozen=True)
class EncodedUnit:
    """A converted transaction's encoded events, and what to keep if Kafka's ids clash."""

    converted: Converted
    events: list[OutboxEvent]
    if_conflict: SetAside


@dataclass
class PoslogBatch:
    """A document's transactions: encoded, skipped, set aside."""

    result: PoslogResult
    units: list[EncodedUnit]
    set_aside: list[SetAside]
    conflicts: list[SetAside] = field(default_factory=list)
    """Converted, then set aside when storing: an event id taken by other content."""

    @property
    def events(self) -> list[OutboxEvent]:
        return [e for unit in self.units for e in unit.events]

    @property
    def skipped(self) -> list[Skipped]:
        return self.result.skipped

    @property
    def all_set_aside(self) -> list[SetAside]:
        return [*self.set_aside, *self.conflicts]

    def report(self) -> dict[str, Any]:
        """What a channel answers: each skipped and set-aside transaction (the first
        MAX_LISTED of each) and the dialect read with."""
        kept = self.all_set_aside
        return {
            "skipped": [s.as_dict() for s in self.skipped[:MAX_LISTED]],
            "set_aside": [s.as_dict() for s in kept[:MAX_LISTED]],
            "dialect": self.result.dialect.name,
        }


MAX_LOGGED = 20
"""Set-aside transactions a log line names (the channel's answer lists more)."""


def set_aside_logged(kept: list[SetAside]) -> str:
    """Each set-aside transaction and why, for a log line the store's IT acts on: its number,
    kind and cause, the fields and the rules they break; never a value of the document (a
    card number, a name): ``tillstream edge set-aside show`` has the transaction itself."""
    named = [f"transaction {k.label} {k.kind} ({k.cause}): {k.logged}" for k in kept[:MAX_LOGGED]]
    if len(kept) > MAX_LOGGED:
        named.append(f"and {len(kept) - MAX_LOGGED} more")
    return " | ".join(named)  # a reason may hold a ';' of its own


def poslog_events(
    ingestor: Ingestor,
    data: bytes,
    channel: str,
    *,
    max_bytes: int = MAX_POSLOG_BYTES,
) -> PoslogBatch:
    """Convert a document and encode each transaction's events for this store (a thread's
    work); raises ``PoslogError`` only when the document cannot be parsed at all."""
    result = parse_poslog(
        data,
        default_currency=ingestor.currency,
        default_timezone=ingestor.timezone,
        max_bytes=max_bytes,
        dialect=ingestor.poslog_dialect,
    )
    units: list[EncodedUnit] = []
    set_aside = list(result.set_aside)
    for converted in result.converted:
        where = f"transaction {converted.label}"
        try:
            events = [
                ingestor.encode(kind, r, channel, where=where) for kind, r in converted.events
            ]
        except IngestError as exc:
            kept = result.set_aside_later(converted, str(exc), exc.reason, logged=exc.logged(where))
            set_aside.append(kept)
            continue
        conflict = result.set_aside_later(converted, _CONFLICT, "conflict", logged=_CONFLICT)
        units.append(EncodedUnit(converted, events, conflict))
    set_aside.sort(key=lambda s: s.index)
    return PoslogBatch(result, units, set_aside)


async def accept_poslog(
    ingestor: Ingestor,
    data: bytes,
    channel: str,
    *,
    source: str,
    max_bytes: int = MAX_POSLOG_BYTES,
) -> tuple[PoslogBatch, Accepted]:
    """Convert a document (in a thread) and store its events and set-aside transactions
    (``source``: the file's name, or ``upload``). Counted once everything is on disk.

    Raises:
        PoslogError: the document cannot be parsed at all.
        OutboxFullError: the outbox is at its disk limit (nothing was stored).
    """
    batch = await asyncio.to_thread(poslog_events, ingestor, data, channel, max_bytes=max_bytes)
    dialect = batch.result.dialect.name
    units = [
        Unit(u.events, if_conflict=_row(u.if_conflict, channel, source, dialect))
        for u in batch.units
    ]
    kept = [_row(s, channel, source, dialect) for s in batch.set_aside]
    outcomes = await ingestor.outbox.store(units, kept)
    stored: list[OutboxEvent] = []
    stored_outcomes: list[Outcome] = []
    for unit, unit_outcomes in zip(batch.units, outcomes, strict=True):
        if Outcome.CONFLICT in unit_outcomes:
            batch.conflicts.append(unit.if_conflict)
        else:
            stored += unit.events
            stored_outcomes += unit_outcomes
    batch.units = [
        u for u, o in zip(batch.units, outcomes, strict=True) if Outcome.CONFLICT not in o
    ]
    accepted = count_accepted(ingestor, batch.events, stored_outcomes)
    metrics.POSLOG_FILES.labels("converted").inc()
    for kind, count in Counter(s.metric_kind for s in batch.skipped).items():
        metrics.POSLOG_SKIPPED.labels(kind).inc(count)
    for cause, count in Counter(s.cause for s in batch.all_set_aside).items():
        metrics.POSLOG_SET_ASIDE.labels(cause).inc(count)
        # Not published: a refusal too, so a card number typed into a till still shows.
        for _ in range(count):
            count_refusal(channel, _REFUSED_AS.get(cause, cause))
    return batch, accepted


def _row(kept: SetAside, channel: str, source: str, dialect: str) -> SetAsideRow:
    return SetAsideRow(
        channel, source, kept.label, kept.kind, kept.reason, kept.cause, dialect, kept.document
    )


# The refusal reason of a set-aside transaction, by its cause (the edge's own reasons as is).
_REFUSED_AS = {
    "unreadable": "invalid_poslog",
    "unknown": "invalid_poslog",
    "invalid": "invalid_poslog",
}

_CONFLICT = (
    "an event id of this transaction was already accepted with other content (the transaction "
    "was sent before and has changed since)"
)


@dataclass(frozen=True, slots=True)
class Retried:
    """What re-running one set-aside transaction came to."""

    id: int
    label: str
    outcome: str
    """``published`` (its events are in the outbox), ``skipped`` (nothing to publish, by
    its nature) or ``set_aside`` (still not read: ``reason`` says why, now)."""
    reason: str = ""
    event_ids: tuple[str, ...] = ()


async def retry_set_aside(
    ingestor: Ingestor, ids: list[int] | None, *, dialect: str | None = None
) -> list[Retried]:
    """Convert set-aside transactions again (``ids``, or every open one) with the code of
    now, the dialect named or detected again; each one's events and the mark that it is
    resolved are stored in one transaction, so it is published exactly once."""
    outbox = ingestor.outbox
    results: list[Retried] = []
    forced = ingestor.poslog_dialect
    ingestor.poslog_dialect = dialect or forced
    try:
        for kept in await outbox.kept(ids):
            results.append(await _retry(ingestor, kept.id, kept.label, kept.document))
    finally:
        ingestor.poslog_dialect = forced
    return results


async def _retry(ingestor: Ingestor, row_id: int, label: str, document: bytes) -> Retried:
    outbox = ingestor.outbox
    try:
        batch = await asyncio.to_thread(poslog_events, ingestor, document, "set-aside")
    except PoslogError as exc:
        await outbox.still_set_aside(row_id, str(exc), "unreadable")
        return Retried(row_id, label, "set_aside", str(exc))
    if batch.set_aside:
        again = batch.set_aside[0]
        await outbox.still_set_aside(row_id, again.reason, again.cause)
        return Retried(row_id, label, "set_aside", again.reason)
    if not batch.units:
        skipped = batch.skipped[0] if batch.skipped else None
        what = f"{skipped.kind}: {skipped.reason}" if skipped else "nothing to publish"
        await outbox.resolve_without_events(row_id, {"skipped": what})
        return Retried(row_id, label, "skipped", what)
    events = batch.events
    outcomes = (await outbox.store([Unit(events, resolves=row_id)]))[0]
    if Outcome.CONFLICT in outcomes:
        return Retried(row_id, label, "set_aside", _CONFLICT)
    count_accepted(ingestor, events, outcomes)
    metrics.POSLOG_RETRIED.inc()
    return Retried(row_id, label, "published", event_ids=tuple(e.event_id for e in events))
