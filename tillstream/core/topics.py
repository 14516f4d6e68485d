"""Topic names, keys and partitioning: decided once, here.

Every store-originated topic is keyed by the store id (UTF-8 bytes) and has the same
partition count, so one store's sales, payments, stock movements, till events and
post-voids land on the same partition number of each topic (co-partitioned) and stay in
order per store.
Values are Avro in the Confluent wire format; subjects follow the TopicNameStrategy
(``<topic>-value``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache

from aiokafka.partitioner import murmur2


@dataclass(frozen=True)
class TopicSpec:
    """A topic tillstream owns, with the configs it is created with."""

    name: str
    schema: str | None
    """Schema directory under ``schemas/`` whose records this topic carries (None: not Avro)."""
    configs: dict[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"{self.name}-value"

    @property
    def compacted(self) -> bool:
        """Whether Kafka keeps the latest record per key (a null value deletes the key)."""
        return self.configs.get("cleanup.policy") == "compact"


_WEEK_MS = str(7 * 24 * 3600 * 1000)
_MONTH_MS = str(30 * 24 * 3600 * 1000)
# Durable topics: unclean leader election would throw away acknowledged events.
_DURABLE = {"unclean.leader.election.enable": "false", "compression.type": "producer"}

SALES = TopicSpec("tillstream.sales", "sale", {**_DURABLE, "retention.ms": _MONTH_MS})
PAYMENTS = TopicSpec("tillstream.payments", "payment", {**_DURABLE, "retention.ms": _MONTH_MS})
STOCK_MOVEMENTS = TopicSpec(
    "tillstream.stock-movements", "stock_movement", {**_DURABLE, "retention.ms": _MONTH_MS}
)

# Till and store-day control events (sign-on, pickups, declarations...): the sales audit's input.
TILL_EVENTS = TopicSpec(
    "tillstream.till-events", "till_event", {**_DURABLE, "retention.ms": _MONTH_MS}
)

# Post-voids: a completed sale cancelled afterwards; every consumer undoes the sale it names.
SALE_VOIDS = TopicSpec(
    "tillstream.sale-voids", "sale_void", {**_DURABLE, "retention.ms": _MONTH_MS}
)

STORE_TOPICS: tuple[TopicSpec, ...] = (SALES, PAYMENTS, STOCK_MOVEMENTS, TILL_EVENTS, SALE_VOIDS)
"""Topics written by the edge services, keyed by store id."""

REORDER_SUGGESTIONS = TopicSpec(
    "tillstream.reorder-suggestions", "reorder_suggestion", {**_DURABLE, "retention.ms": _MONTH_MS}
)
"""Written by the ERP inventory service, keyed by store id."""
CUSTOMER_REQUESTS = TopicSpec(
    "tillstream.customer-requests", "customer_request", {**_DURABLE, "retention.ms": _MONTH_MS}
)
"""Erasure and re-enrolment requests, keyed by customer id, read by every service that keeps
customer data."""

HQ_TOPICS: tuple[TopicSpec, ...] = (REORDER_SUGGESTIONS, CUSTOMER_REQUESTS)

# Master data, head office to every store: compacted, so each topic is always the current
# copy (the latest record per key; a tombstone deletes a key), and a new edge builds its copy
# from the topic alone. Tombstones stay a week so an edge offline for days still sees them.
_COMPACTED = {
    **_DURABLE,
    "cleanup.policy": "compact",
    "delete.retention.ms": _WEEK_MS,
    "min.compaction.lag.ms": "60000",
}
ITEMS = TopicSpec("tillstream.items", "item", _COMPACTED)
"""The item master, keyed by SKU (:func:`item_key`)."""
PRICES = TopicSpec("tillstream.prices", "price", _COMPACTED)
"""List prices, keyed by store, SKU and start of validity (:func:`price_key`)."""

MASTER_DATA_TOPICS: tuple[TopicSpec, ...] = (ITEMS, PRICES)
"""Written by head office (``tillstream items|prices publish``), read whole by every edge."""

# The store estate (docs/fleet.md): what every edge reports of itself, its tills and devices
# (keyed by store id; stamped with the broker's clock on append, so the fleet service reads
# each store's clock skew from it; a week of history), and what head office decides for each
# of them (compacted, keyed by store and target: :func:`estate_key`).
ESTATE_REPORTS = TopicSpec(
    "tillstream.estate-reports",
    "estate_report",
    {**_DURABLE, "retention.ms": _WEEK_MS, "message.timestamp.type": "LogAppendTime"},
)
ESTATE_DESIRED = TopicSpec("tillstream.estate-desired", "estate_desired", _COMPACTED)

ESTATE_TOPICS: tuple[TopicSpec, ...] = (ESTATE_REPORTS, ESTATE_DESIRED)
"""Edges write reports and read their store's desired state; head office the other way."""

ALL_TOPICS: tuple[TopicSpec, ...] = STORE_TOPICS + HQ_TOPICS + MASTER_DATA_TOPICS + ESTATE_TOPICS

EVENT_TOPICS: dict[str, TopicSpec] = {t.schema: t for t in ALL_TOPICS if t.schema}
"""Event type (schema directory name) -> topic."""

_BY_NAME = {t.name: t for t in ALL_TOPICS}


def topic_named(name: str) -> TopicSpec:
    """The spec of a tillstream topic, by its name."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise KeyError(f"unknown topic {name!r}; tillstream topics are: {known}") from None


def store_key(store_id: str) -> bytes:
    """The message key of every store-originated event."""
    return store_id.encode("utf-8")


def item_key(sku: str) -> bytes:
    """The message key of an item: its SKU."""
    return sku.encode("utf-8")


def estate_key(store_id: str, target: str) -> bytes:
    """The message key of a desired state: ``[store, target]`` as compact JSON (``target``:
    ``edge``, ``till/<id>``, ``device/<name>``)."""
    return json.dumps([store_id, target], separators=(",", ":")).encode("utf-8")


@lru_cache(maxsize=65_536)  # keys repeat (store ids): hash each once
def _murmur2(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_of(key: bytes, partitions: int) -> int:
    """The partition tillstream's producers (aiokafka's default partitioner: murmur2, as
    Kafka's Java client) give ``key`` on a topic of ``partitions`` partitions."""
    return _murmur2(key) % partitions


def price_key(store_id: str | None, sku: str, starts: str | None) -> bytes:
    """The message key of a price: ``[store or null, sku, start or null]`` as compact JSON
    (``starts``: the ISO date or UTC time its validity starts). One key per price window, so
    compaction keeps a change published ahead of its day beside today's price."""
    return json.dumps([store_id, sku, starts], separators=(",", ":")).encode("utf-8")


__all__ = [
    "ALL_TOPICS",
    "CUSTOMER_REQUESTS",
    "ESTATE_DESIRED",
    "ESTATE_REPORTS",
    "ESTATE_TOPICS",
    "EVENT_TOPICS",
    "HQ_TOPICS",
    "ITEMS",
    "MASTER_DATA_TOPICS",
    "PAYMENTS",
    "PRICES",
    "REORDER_SUGGESTIONS",
    "SALES",
    "SALE_VOIDS",
    "STOCK_MOVEMENTS",
    "STORE_TOPICS",
    "TILL_EVENTS",
    "TopicSpec",
    "estate_key",
    "item_key",
    "partition_of",
    "price_key",
    "store_key",
    "topic_named",
]
