"""The one accept path of the edge: every channel hands events here.

An event is checked against this store, encoded with the Avro contracts (so nothing
undecodable is ever published) and appended to the outbox. Only then is it accepted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from tillstream.core import rules
from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.identifiers import field_problem
from tillstream.core.registry import registry_from_settings
from tillstream.core.settings import Settings
from tillstream.core.topics import EVENT_TOPICS, store_key
from tillstream_edge import metrics
from tillstream_edge.limits import RecordLimits
from tillstream_edge.masterdata_copy import MasterDataCopy
from tillstream_edge.outbox import Outbox, OutboxEvent, OutboxFullError, Outcome
from tillstream_edge.poslog_dialect import BY_NAME as POSLOG_DIALECTS

log = logging.getLogger(__name__)


class IngestError(ValueError):
    """An event cannot be accepted; ``problems`` lists (field, message) pairs, ``reason``
    is what the channel counts the refusal as (``invalid``, ``card_number``, ``rule``,
    ``conflict``...: :func:`count_refusal`)."""

    def __init__(
        self, problems: list[tuple[str, str]], reason: str = "invalid", *, quoting: bool = False
    ) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))
        self.problems = problems
        self.reason = reason
        self.quoting = quoting
        """The messages may quote what was sent (the codec's do): logs get none of them. The
        edge's own rules name the field and the rule, never the value."""

    def logged(self, where: str = "") -> str:
        """The problems for a log line: each field (``where`` taken off its path) and the
        rule it breaks, never a value sent."""
        named = []
        for field, message in self.problems:
            field = field.removeprefix(where).lstrip(".") or "event"
            named.append(f"{field}: {_CONTRACT if self.quoting else message}")
        return "; ".join(named)


_CONTRACT = "does not fit its Avro contract"


class EventTooLarge(IngestError):
    """An event Kafka could never take: refused at the door (HTTP 413), naming the limit."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(problems, reason="too_large")


class WindowCheck(Protocol):
    """The plausibility window of the live channels: a fixed ``rules.TimeWindow``, or the
    edge's ``LiveSettings`` (head office may change it while the edge runs)."""

    def problem(self, at: datetime, now: datetime) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    event_ids: list[str]
    duplicates: int


class Ingestor:
    """Validates, encodes and durably stores events for one store."""

    def __init__(
        self,
        store_id: str,
        codec: AvroCodec,
        outbox: Outbox,
        *,
        timezone: tzinfo = UTC,
        window: WindowCheck | None = None,
        limits: RecordLimits | None = None,
        currency: str = "EUR",
        backfill: bool = False,
        poslog_dialect: str | None = None,
    ) -> None:
        self.store_id = store_id
        self.currency = currency
        """The store's currency: every sale and payment is in it; POSLog's default."""
        self.timezone = timezone
        """Zone of POSLog times written without an offset (store-local times)."""
        self.window = window
        """Plausibility window of live channels; None for a backfill (``edge import``)."""
        self.backfill = backfill
        if poslog_dialect is not None and poslog_dialect not in POSLOG_DIALECTS:
            known = ", ".join(POSLOG_DIALECTS)
            raise ValueError(
                f"TILLSTREAM_EDGE_POSLOG_DIALECT: no POSLog dialect {poslog_dialect!r}; "
                f"known: {known}"
            )
        self.poslog_dialect = poslog_dialect
        """The POSLog dialect forced on every document (None: detected per document)."""
        """Old sales (``edge import``): not compared with the copy's prices, which are today's."""
        self._codec = codec
        self.outbox = outbox
        self.on_accepted: list[Any] = []  # callbacks (e.g. wake the forwarder)
        self.limits = limits
        """The largest record each topic takes (None: no size check)."""
        self.master: MasterDataCopy | None = None
        """The store's copy of the item master and prices: sale lines get ``stock_item`` and
        ``list_price`` from it (None: sales pass as sent)."""
        self._master_failing = False

    def encode(
        self,
        event_type: str,
        record: dict[str, Any],
        channel: str,
        where: str = "",
        *,
        checked: bool = False,
    ) -> OutboxEvent:
        """Check and encode one event; raises :class:`IngestError` naming the bad field.

        ``checked``: every string field was already held to the card-number and item
        identifier rules (``tillstream_edge.models``, the HTTP channel), so they are not
        scanned a second time.
        """
        prefix = f"{where}." if where else ""
        if record.get("store_id") != self.store_id:
            # Never quote what was sent: it may be anything, a card number included.
            message = f"this edge serves store {self.store_id!r} only; the event names another"
            raise IngestError([(f"{prefix}store_id", message)])
        found = None if checked else field_problem(record)
        if found is not None:  # counted once, by the channel, under the reason given here
            path, problem = found
            raise IngestError([(f"{prefix}{path}", problem.message)], reason=problem.kind)
        if problems := self._broken_rules(event_type, record):
            raise IngestError(
                [(f"{prefix}{field}", message) for field, message in problems], reason="rule"
            )
        try:
            value = self._codec.encode(event_type, record)
        except CodecError as exc:
            raise IngestError([(prefix.rstrip(".") or "event", str(exc))], quoting=True) from exc
        digest = None
        annotated = self._with_master_data(event_type, record)
        if annotated is not None:
            try:
                value, digest = self._codec.encode(event_type, annotated), _sha256(value)
            except CodecError as exc:  # never refuse a sale for what the edge added
                log.error("item master data not added to a %s: %s", event_type, exc)
        event = OutboxEvent(
            event_id=str(record["event_id"]),
            event_type=event_type,
            topic=EVENT_TOPICS[event_type].name,
            key=store_key(self.store_id),
            value=value,
            channel=channel,
            digest=digest,
        )
        self._check_size(event, prefix.rstrip(".") or "event")
        return event

    def _with_master_data(self, event_type: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """A sale with what the item master says of its lines (``MasterDataCopy.annotate_sale``),
        or None: not a sale, nothing to add, or the copy cannot be read (the sale is taken as
        sent: the copy never stops a sale)."""
        if self.master is None or event_type != "sale":
            return None
        try:
            annotated = self.master.annotate_sale(record, list_prices=not self.backfill)
        except Exception as exc:  # a broken copy is logged once per failure spell
            if not self._master_failing:
                log.error("item master not readable; sales are taken as sent: %s", exc)
            self._master_failing = True
            return None
        self._master_failing = False
        return annotated

    def _check_size(self, event: OutboxEvent, where: str) -> None:
        """Refuse now what Kafka would refuse later: once accepted, an event must be
        publishable, or it would block every event of the store queued behind it."""
        problem = self.limits and self.limits.problem(event.topic, event.key, event.value)
        if problem:  # counted once, by the channel, under the error's reason
            raise EventTooLarge([(where, problem)])

    def _broken_rules(self, event_type: str, record: dict[str, Any]) -> list[tuple[str, str]]:
        """What a consumer would refuse, refused here first (the rules are shared with them),
        on live channels a time outside the plausibility window, and another currency than
        the store's."""
        problems = rules.event_problems(event_type, record)
        at = record.get("occurred_at")
        if not problems and self.window is not None and isinstance(at, datetime):
            late = self.window.problem(at, datetime.now(UTC))
            problems += [("occurred_at", late)] if late else []
        named = {field for field, _ in problems}
        if "currency" not in named and (problem := self._currency_problem(record)) is not None:
            problems.append(("currency", problem))
        return problems

    def _currency_problem(self, record: dict[str, Any]) -> str | None:
        """One store, one currency (every channel): a sale in another one would be summed
        with this store's money by every consumer."""
        currency = record.get("currency")
        if currency is None or currency == self.currency:
            return None
        # An ISO code (the core's rule passed) is safe to name; nothing else is quoted.
        named = f"{currency} is not" if rules.currency_problem(str(currency)) is None else "is not"
        return (
            f"{named} this store's currency {self.currency} (TILLSTREAM_STORE_CURRENCY); "
            "a store takes sales and payments in its own currency only"
        )

    async def accept(self, events: Sequence[OutboxEvent]) -> Accepted:
        """Append to the outbox; returns once every event is on disk.

        Raises:
            IngestError: an event id was already used for different content (reason
                ``conflict``, one problem per event; then none of ``events`` is stored).
            OutboxFullError: the outbox is at its disk limit.
        """
        outcomes = await self.outbox.append(events)
        conflicts = [
            (f"events[{i}].event_id", f"{e.event_id} was already accepted with different content")
            for i, (e, o) in enumerate(zip(events, outcomes, strict=True))
            if o is Outcome.CONFLICT
        ]
        if conflicts:  # counted by the channel, as every refusal
            raise IngestError(conflicts, reason=CONFLICT)
        return count_accepted(self, events, outcomes)


CONFLICT = "conflict"
"""The reason of a refusal because an event id was already accepted with other content."""


def count_accepted(
    ingestor: Ingestor, events: Sequence[OutboxEvent], outcomes: Sequence[Outcome]
) -> Accepted:
    """Count stored events (new ones and duplicates), wake who waits for them."""
    duplicates = 0
    for event, outcome in zip(events, outcomes, strict=True):
        if outcome is Outcome.ACCEPTED:
            metrics.EVENTS_ACCEPTED.labels(event.channel, event.event_type).inc()
        elif outcome is Outcome.DUPLICATE:
            duplicates += 1
            metrics.EVENTS_DUPLICATE.labels(event.channel).inc()
    if events:
        metrics.LAST_EVENT_TIME.set(time.time())
    for callback in ingestor.on_accepted:
        callback()
    return Accepted([e.event_id for e in events], duplicates)


def ingestor_from_settings(
    settings: Settings,
    outbox: Outbox,
    limits: RecordLimits,
    *,
    live: bool = True,
    window: WindowCheck | None = None,
) -> Ingestor:
    """The ingestor of the store the settings name, writing to ``outbox``: its currency, its
    zone for POSLog local times and, on ``live`` channels (not a backfill), the plausibility
    window (``window``, else the settings') and the comparison of sale lines with the list
    prices."""
    if settings.store_id is None:
        raise ValueError("a store id is needed: TILLSTREAM_STORE_ID")
    if window is None:
        window = rules.TimeWindow(settings.edge_max_event_age, settings.edge_max_future)
    return Ingestor(
        settings.store_id,
        AvroCodec(registry_from_settings(settings)),
        outbox,
        timezone=ZoneInfo(settings.store_timezone),
        window=window if live else None,
        limits=limits,
        currency=settings.store_currency,
        backfill=not live,
        poslog_dialect=settings.edge_poslog_dialect,
    )


def _sha256(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def refusal_reason(exc: Exception, *, poslog: bool = False) -> str:
    """What a refusal raised on the way in is counted as: the reason an :class:`IngestError`
    names (a POSLog channel counts a plain ``invalid`` as ``invalid_poslog``), a full outbox,
    or a POSLog document that could not be parsed."""
    if isinstance(exc, OutboxFullError):
        return "outbox_full"
    reason = exc.reason if isinstance(exc, IngestError) else "invalid"
    return "invalid_poslog" if poslog and reason == "invalid" else reason


def count_refusal(channel: str, reason: str) -> None:
    """The one place a refusal is counted (``tillstream_edge_events_rejected_total``): once
    per refused request, POSLog document or device event, under one reason, by the channel
    that refused it (docs/observability.md, TillstreamEdgeRejectionsHigh)."""
    metrics.EVENTS_REJECTED.labels(channel, reason).inc()
