"""Driving simulated tills at an offered rate, into edge services (HTTP and POSLog drop
folders, as real tills do) or straight into Kafka (load tests of head office alone)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx

from tillstream.core.codec import AvroCodec
from tillstream.core.records import jsonable
from tillstream.core.topics import EVENT_TOPICS, store_key
from tillstream.simulate.clock import StoreClock, store_clock
from tillstream.simulate.poslog import poslog
from tillstream.simulate.shifts import TillShift, store_day_event
from tillstream.simulate.shopper import StoreTraffic, Transaction

log = logging.getLogger(__name__)

EVENTS_PER_TRANSACTION = 2.05
"""A sale and its payments, on average: converts an offered event rate to receipts."""
DELIVERY_INTERVAL = 10.0
COUNT_INTERVAL = 15.0
"""Seconds between two stock-takes of a store (a few SKUs each)."""
COUNT_LAG = 3.0
"""Most seconds between counting a shelf and posting the count."""
MIN_TICK = 0.02
VOID_RATIO = 0.01
"""Share of an HTTP till's receipts post-voided right after (a wrong tender rung up)."""


@dataclass
class Stats:
    """What the simulated tills did (events, by store)."""

    sent: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    """Refused by the edge: the deliberately bad events."""
    failed: Counter[str] = field(default_factory=Counter)
    """Could not be delivered after retries (edge down for long)."""
    poslog_files: int = 0
    refused_receipts: Counter[str] = field(default_factory=Counter)
    """Receipts the edge refused, by store: their numbers are gaps in their tills' numbering
    (the till printed them; a real POS does not give a number back)."""
    short_cashiers: Counter[str] = field(default_factory=Counter)
    """Shifts whose cashier came out short, by store (flagged beyond the audit's tolerance)."""
    post_voids: Counter[str] = field(default_factory=Counter)
    """Sales post-voided at their till, by store: undone by every service, never flagged."""

    def total(self, counter: str) -> int:
        return sum(getattr(self, counter).values())


class Sink(Protocol):
    async def send(self, store: str, events: list[tuple[str, dict[str, Any]]]) -> bool: ...
    async def send_poslog(self, store: str, tx: Transaction) -> bool: ...
    async def close(self) -> None: ...


class EdgeSink:
    """Tills posting to their store's edge; POSLog tills write files to its drop folder
    (or post them to ``/v1/poslog`` when no folder is given)."""

    def __init__(self, edges: dict[str, str], drop_folders: dict[str, Path] | None = None):
        self.edges = edges
        self.drop_folders = drop_folders or {}
        self.client = httpx.AsyncClient(timeout=15)

    async def send(self, store: str, events: list[tuple[str, dict[str, Any]]]) -> bool:
        body = [{"type": event, **jsonable(record)} for event, record in events]
        response = await self._post(f"{self.edges[store]}/v1/events", json=body)
        return response is not None and response.status_code < 300

    async def send_poslog(self, store: str, tx: Transaction) -> bool:
        document = poslog(tx)
        folder = self.drop_folders.get(store)
        if folder is not None:  # written aside, then renamed: the edge never sees half a file
            name = f"{tx.sale['receipt_number']}-{tx.sale['event_id'][:8]}.xml"
            partial = folder / f".{name}.part"
            await asyncio.to_thread(partial.write_bytes, document)
            await asyncio.to_thread(partial.rename, folder / name)
            return True
        response = await self._post(
            f"{self.edges[store]}/v1/poslog",
            content=document,
            headers={"content-type": "application/xml"},
        )
        return response is not None and response.status_code < 300

    async def _post(self, url: str, **kwargs: Any) -> httpx.Response | None:
        """POST like a till: retry (same event ids) while the edge is unreachable."""
        for attempt in range(6):
            try:
                response = await self.client.post(url, **kwargs)
            except httpx.TransportError as exc:
                log.debug("till could not reach %s (%s); retrying", url, exc)
            else:
                if response.status_code != 503:  # 503: outbox full, come back later
                    return response
            await asyncio.sleep(min(0.2 * 2**attempt, 5))
        return None

    async def close(self) -> None:
        await self.client.aclose()


class KafkaSink:
    """Events published straight to Kafka, as edges would publish them."""

    def __init__(self, producer: Any, codec: AvroCodec) -> None:
        self.producer = producer
        self.codec = codec

    async def send(self, store: str, events: list[tuple[str, dict[str, Any]]]) -> bool:
        futures = [
            await self.producer.send(
                EVENT_TOPICS[event].name, self.codec.encode(event, record), key=store_key(store)
            )
            for event, record in events
        ]
        await asyncio.gather(*futures)
        return True

    async def send_poslog(self, store: str, tx: Transaction) -> bool:
        return await self.send(store, tx.poslog_events)

    async def close(self) -> None:
        await self.producer.flush()


class Simulator:
    """Several stores with several tills each, ringing up receipts at ``rate`` events/s."""

    def __init__(
        self,
        stores: list[str],
        sink: Sink,
        *,
        rate: float,
        tills: int = 3,
        seed: int | None = None,
        poslog_tills: int = 1,
        bad_ratio: float = 0.005,
        count_interval: float = COUNT_INTERVAL,
    ) -> None:
        rng = random.Random(seed)
        self.clocks: dict[str, StoreClock] = {s: store_clock(n) for n, s in enumerate(stores)}
        """Each store's offset and business day, shared by its sales and till events."""
        self.traffic = {
            store: StoreTraffic(
                store,
                random.Random(rng.getrandbits(64)),
                tills=tills,
                bad_ratio=bad_ratio,
                clock=self.clocks[store],
            )
            for store in stores
        }
        # Drawn after the stores' generators, so a seed's receipts are what they were.
        self.shifts = {
            (store, till): TillShift(
                store, till, random.Random(rng.getrandbits(64)), clock=self.clocks[store]
            )
            for store in stores
            for till in range(tills)
        }
        self._day_rng = random.Random(rng.getrandbits(64))
        """Event ids of the store-day events."""
        self.sink = sink
        self.rate = rate
        self.tills = tills
        self.poslog_tills = min(poslog_tills, tills)
        """The last tills of each store are older ones that write POSLog files."""
        self.count_interval = count_interval
        self.stats = Stats()

    async def run(self, duration: float | None = None, stop: asyncio.Event | None = None) -> Stats:
        """Run until ``duration`` seconds have passed or ``stop`` is set."""
        stop = stop or asyncio.Event()
        started = time.monotonic()
        opened = datetime.now(UTC)
        for store, clock in self.clocks.items():  # before any till signs on
            clock.open(opened)
            await self._deliver(store, [self._store_day("STORE_DAY_OPEN", store, opened)])
        tasks = [asyncio.create_task(self._deliveries(store, stop)) for store in self.traffic]
        tasks += [asyncio.create_task(self._stock_takes(store, stop)) for store in self.traffic]
        tills = [
            asyncio.create_task(self._till(store, till, stop, started))
            for store in self.traffic
            for till in range(self.tills)
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=duration)
        stop.set()
        await asyncio.gather(*tills)
        for store in self.traffic:  # once every till of the store has settled
            settled = [self.shifts[(store, t)].closed_at for t in range(self.tills)]
            closed = max([datetime.now(UTC), *(at for at in settled if at is not None)])
            await self._deliver(store, [self._store_day("STORE_DAY_CLOSE", store, closed)])
        await asyncio.gather(*tasks)
        await self.sink.close()
        return self.stats

    def _store_day(self, kind: str, store: str, at: datetime) -> tuple[str, dict[str, Any]]:
        return store_day_event(kind, store, self.clocks[store], at, self._day_rng)

    async def _till(self, store: str, till: int, stop: asyncio.Event, started: float) -> None:
        traffic = self.traffic[store]
        receipts_per_second = self.rate / EVENTS_PER_TRANSACTION
        interval = len(self.traffic) * self.tills / receipts_per_second
        per_tick = max(1, round(MIN_TICK / interval))
        # Tills start spread over one interval, not all at once.
        next_at = started + interval * per_tick * (till + 1) / self.tills
        is_poslog = till >= self.tills - self.poslog_tills
        shift = self.shifts[(store, till)]  # sign-on, pickups, declaration at close
        await self._deliver(store, shift.open(datetime.now(UTC)))
        if shift.short_by:
            self.stats.short_cashiers[store] += 1
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
            if stop.is_set():
                break
            next_at += interval * per_tick
            now = datetime.now(UTC)
            receipts = [traffic.transaction(till, now) for _ in range(per_tick)]
            for tx in receipts:
                if is_poslog and not tx.bad:
                    await self._deliver_poslog(store, tx)
            good = [tx for tx in receipts if not tx.bad and not is_poslog]
            if good:
                await self._deliver(store, [e for tx in good for e in tx.events])
            # A bad receipt goes alone, so the edge's refusal concerns only it. Its number
            # stays used (the till printed it): a gap at head office. Its money stays out of
            # the drawer, so the gap is the refusal's one flag.
            for tx in receipts:
                if tx.bad and not await self._deliver(store, tx.events, bad=True):
                    self.stats.refused_receipts[store] += 1
            paid = [p for tx in receipts if not tx.bad for p in tx.payments]
            if pickups := shift.took(paid, now):
                await self._deliver(store, pickups)
            if good and traffic.rng.random() < VOID_RATIO * len(good):
                await self._post_void(store, shift, good[-1], now)
        # However the stop found it (waiting, or mid-delivery), the till settles.
        await self._deliver(store, shift.close(datetime.now(UTC)))

    async def _post_void(self, store: str, shift: TillShift, tx: Transaction, at: datetime) -> None:
        """The till voids a purchase it just rang up (HTTP tills: POSLog post-voids are the
        converter's); its money goes back out of the drawer once the edge has the void."""
        if tx.sale["totals"]["net_amount"] <= 0:
            return
        void = self.traffic[store].post_void(tx, at)
        if await self._deliver(store, [("sale_void", void)]):
            shift.gave_back(tx.payments, void["occurred_at"])
            self.stats.post_voids[store] += 1

    async def _deliveries(self, store: str, stop: asyncio.Event) -> None:
        traffic = self.traffic[store]
        await self._deliver(store, [("stock_movement", m) for m in traffic.opening_count(
            datetime.now(UTC)
        )])  # fmt: skip
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), DELIVERY_INTERVAL)
            if not stop.is_set():
                movements = traffic.delivery(datetime.now(UTC))
                if movements:
                    await self._deliver(store, [("stock_movement", m) for m in movements])

    async def _stock_takes(self, store: str, stop: asyncio.Event) -> None:
        """Now and then a few SKUs are counted; the count is posted once the session ends,
        up to :data:`COUNT_LAG` seconds later, with the time the shelf was counted."""
        traffic = self.traffic[store]
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.count_interval)
            if stop.is_set():
                return
            lag = traffic.rng.uniform(0, min(COUNT_LAG, self.count_interval / 2))
            counts = traffic.stock_take(datetime.now(UTC) - timedelta(seconds=lag))
            await self._deliver(store, [("stock_movement", m) for m in counts])

    async def _deliver(
        self, store: str, events: list[tuple[str, dict[str, Any]]], *, bad: bool = False
    ) -> bool:
        """Send ``events``; whether they were accepted."""
        self.stats.sent[store] += len(events)
        ok = await self.sink.send(store, events)
        if ok:
            self.stats.accepted[store] += len(events)
        elif bad:
            self.stats.rejected[store] += len(events)
        else:
            self.stats.failed[store] += len(events)
        return ok

    async def _deliver_poslog(self, store: str, tx: Transaction) -> None:
        events = len(tx.poslog_events)
        self.stats.sent[store] += events
        if await self.sink.send_poslog(store, tx):
            self.stats.accepted[store] += events
            self.stats.poslog_files += 1
        else:
            self.stats.failed[store] += events
