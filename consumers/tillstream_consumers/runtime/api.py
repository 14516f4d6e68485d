"""What a consumer's author writes against: :class:`Consumer`, :class:`Record`, :class:`Context`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Protocol, TypeVar, cast

from starlette.routing import BaseRoute

from tillstream.core.events import (
    CustomerRequest,
    EstateDesired,
    EstateReport,
    Item,
    Payment,
    Price,
    ReorderSuggestion,
    Sale,
    SaleVoid,
    StockMovement,
    TillEvent,
)
from tillstream.core.settings import Settings
from tillstream_consumers.runtime.db import Database, Migration
from tillstream_consumers.runtime.partitioning import TopicPartition

T = TypeVar("T")

Encode = Callable[[str, dict[str, Any]], bytes]
"""``encode(event, record) -> bytes``: a record of an event type in Kafka's wire format."""


class Query(Protocol):
    """What :meth:`Consumer.routes` is given: ``await query(fn)`` runs ``fn(db)`` on the
    service's database between batches and returns what it returned."""

    def __call__(self, fn: Callable[[Database], T], /) -> Awaitable[T]: ...


class WrongEvent(TypeError):
    """A typed accessor of :class:`Record` was called on a record of another event type."""


class PermanentError(Exception):
    """This record can never be applied (invalid for this consumer): dead-letter it.

    Raise it from :meth:`Consumer.apply`; the runtime then applies the batch record by
    record, sends the records that fail to the dead-letter topic and goes on. Any other
    exception that is not a transient database failure is treated the same way.
    """


class Tombstone(WrongEvent):
    """A typed accessor of :class:`Record` was called on a tombstone (it has no value)."""


@dataclass(frozen=True, slots=True)
class Record:
    """A decoded Kafka record, or a tombstone of a compacted topic (:attr:`tombstone`)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    event: str
    """Event type: ``sale``, ``payment``, ``stock_movement``... (the schema's directory name)."""
    value: dict[str, Any]
    """The Avro record as a dict; :meth:`sale`, :meth:`payment`... give it typed."""
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()
    tombstone: bool = False
    """A null value on a compacted topic (``tillstream.items``, ``tillstream.prices``): the
    record of :attr:`key` is deleted. ``event`` is the topic's event type, ``value`` is
    empty, there is no event id (so no duplicate check: apply it by key, which is
    idempotent), and the typed accessors raise :class:`Tombstone`."""

    @property
    def event_id(self) -> str | None:
        event_id = self.value.get("event_id")
        return None if event_id is None else str(event_id)

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def sale(self) -> Sale:
        """The record as a :class:`~tillstream.core.events.Sale`; :class:`WrongEvent` if it
        is not one (the same for each accessor below)."""
        return cast(Sale, self._value_of("sale"))

    def payment(self) -> Payment:
        return cast(Payment, self._value_of("payment"))

    def sale_void(self) -> SaleVoid:
        return cast(SaleVoid, self._value_of("sale_void"))

    def stock_movement(self) -> StockMovement:
        return cast(StockMovement, self._value_of("stock_movement"))

    def till_event(self) -> TillEvent:
        return cast(TillEvent, self._value_of("till_event"))

    def reorder_suggestion(self) -> ReorderSuggestion:
        return cast(ReorderSuggestion, self._value_of("reorder_suggestion"))

    def customer_request(self) -> CustomerRequest:
        return cast(CustomerRequest, self._value_of("customer_request"))

    def item(self) -> Item:
        return cast(Item, self._value_of("item"))

    def price(self) -> Price:
        return cast(Price, self._value_of("price"))

    def estate_report(self) -> EstateReport:
        return cast(EstateReport, self._value_of("estate_report"))

    def estate_desired(self) -> EstateDesired:
        return cast(EstateDesired, self._value_of("estate_desired"))

    def _value_of(self, event: str) -> dict[str, Any]:
        if self.tombstone:
            raise Tombstone(
                f"{self.topic}[{self.partition}]@{self.offset} is a tombstone (its key is "
                "deleted): check record.tombstone before reading its value"
            )
        if self.event != event:
            raise WrongEvent(
                f"{self.topic}[{self.partition}]@{self.offset} is a {self.event} event, "
                f"not a {event}"
            )
        return self.value

    @classmethod
    def decoded(
        cls,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        event: str,
        value: dict[str, Any],
        timestamp_ms: int,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> Record:
        """A record from the codec's output, its event id turned into text once (the runtime
        and consumers read it several times per record; ``UUID.__str__`` is not free)."""
        if value.get("event_id") is not None:
            value["event_id"] = str(value["event_id"])
        return cls(topic, partition, offset, key, event, value, timestamp_ms, headers)

    @classmethod
    def deleted(
        cls,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        event: str,
        timestamp_ms: int,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> Record:
        """A tombstone: ``key`` is deleted from the compacted ``topic``."""
        return cls(topic, partition, offset, key, event, {}, timestamp_ms, headers, True)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An event a consumer publishes, stored with its effects and sent after they commit."""

    topic: str
    key: bytes
    value: bytes


@dataclass
class Context:
    """What ``apply`` works with: the open database transaction, and a way to publish.

    Events published through :meth:`publish` are stored in the same transaction as the
    effects and sent to Kafka after it commits, so they exist exactly when the effects do.
    """

    db: Database
    now: datetime
    encode: Encode
    """``encode(event, record) -> bytes`` (the service's Avro codec)."""
    outgoing: list[Outgoing] = field(default_factory=list)

    def publish(self, topic: str, event: str, key: bytes, value: Mapping[str, Any]) -> None:
        """Publish ``value`` (an ``event`` record) to ``topic`` once this batch commits."""
        self.outgoing.append(Outgoing(topic, key, self.encode(event, dict(value))))


class Consumer:
    """Base class of every consumer service. Subclasses set the class attributes and ``apply``."""

    name: ClassVar[str]
    """Consumer group id; also names its dead-letter topic ``tillstream.dlq.<name>``."""
    topics: ClassVar[Sequence[str]]
    migrations: ClassVar[Sequence[Migration]] = ()
    """SQL creating the consumer's tables, applied once each, in order. Append; never edit a
    published one. Use ``?`` placeholders, or ``{dialect: sql}`` where dialects differ."""
    publishes: ClassVar[Sequence[str]] = ()
    """Topics this consumer publishes to (created at start-up if missing)."""
    deduplicates: ClassVar[bool] = True
    """Whether the runtime remembers every event id applied and skips one that comes again
    at another offset (a till's resend after a crash). A consumer whose writes are keyed by
    event id and so take a resend as a no-op by themselves (the sales audit's facts) may set
    this False: it saves a row and a lookup per event."""
    signs_in: ClassVar[bool] = False
    """Whether people act on this service's pages (acknowledge, reopen): it is then served
    behind sign-in and tokens (``runtime/guard.py``), and without either it listens on
    loopback only (unless ``TILLSTREAM_INSECURE_DEV``)."""
    default_db_url: ClassVar[str | None] = None
    """Database used when neither ``--db`` nor ``TILLSTREAM_DB_URL`` names one."""
    component: ClassVar[str | None] = None
    """Whose tables ``migrations`` create, as recorded in ``schema_migrations`` (default:
    ``name``). Running under another group (:meth:`in_group`) keeps it, so a second group of
    the same consumer on one database finds its migrations done instead of running them again."""

    @classmethod
    def identity(cls) -> str:
        """The migration component: ``component``, else ``name``."""
        return cls.component or cls.name

    @classmethod
    def in_group(cls, group: str) -> type[Consumer]:
        """This consumer under another consumer group (and dead-letter topic), same tables."""
        return type(cls.__name__, (cls,), {"name": group, "component": cls.identity()})

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()

    def apply(self, ctx: Context, records: list[Record]) -> None:
        """Apply a batch inside one database transaction.

        Called with records in partition order; each event id is given once across crashes,
        restarts and rebalances (the runtime stores offsets and event ids in the same
        transaction). Raise :class:`PermanentError` for a record that can never be applied.
        """
        raise NotImplementedError

    def setup(self, db: Database) -> None:
        """Optional: called once at start-up after migrations (outside any batch)."""

    def refresh(self, db: Database) -> None:
        """Optional: called every few seconds outside batches (business gauges, timers)."""

    def routes(self, query: Query) -> Sequence[BaseRoute]:
        """Optional: extra Starlette routes for the service's HTTP server (read APIs).

        ``await query(fn)`` runs ``fn(db)`` on the service's database between batches.
        """
        return []


QTY_SCALE = 3
"""Quantities are stored in thousandths (the schemas' decimal scale)."""
MONEY_SCALE = 4
"""Money is stored in ten-thousandths of the currency unit."""


def to_units(value: Decimal, scale: int) -> int:
    """An exact decimal as an integer count of ``10**-scale`` (how tables store money and
    quantities: exact and portable across SQLite, PostgreSQL and DuckDB)."""
    return int(value.scaleb(scale).to_integral_value())


def from_units(value: int | None, scale: int) -> Decimal:
    return Decimal(value or 0).scaleb(-scale)
