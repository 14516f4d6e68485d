"""Driving simulated tills at an offered rate, into edge services (HTTP and POSLog drop
folders, as real tills do) or straight into Kafka (load tests of head office alone)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx

from tillstream.core.codec import AvroCodec
from tillstream.core.pan import mask_pans
from tillstream.core.records import jsonable
from tillstream.core.topics import EVENT_TOPICS, store_key
from tillstream.simulate.clock import StoreClock, store_clock
from tillstream.simulate.poslog import poslog
from tillstream.simulate.shifts import TillShift, store_day_event
from tillstream.simulate.shopper import DELIVERY_SECONDS, StoreTraffic, Transaction

log = logging.getLogger(__name__)

EVENTS_PER_TRANSACTION = 2.05
"""A sale and its payments, on average: converts an offered event rate to receipts."""
DELIVERY_INTERVAL = DELIVERY_SECONDS
COUNT_INTERVAL = 15.0
"""Seconds between two stock-takes of a store (a few SKUs each)."""
COUNT_LAG = 3.0
"""Most seconds between counting a shelf and posting the count."""
MIN_TICK = 0.02
SETTLE_SECONDS = 5.0
"""Most seconds the tills take to settle after the run's end (requests in flight, shifts and
store-days closed): a run ends then, however its edges answer (or hang)."""
CUT_OFF = "not answered before the run ended"
"""Why events whose request was still waiting at the end of :data:`SETTLE_SECONDS` failed."""
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
    failures: Counter[str] = field(default_factory=Counter)
    """Events not delivered, by why (``S001: http://...: unreachable (ConnectError...)``)."""
    first_failure: str | None = None
    """Why the first events not delivered were not (what to say at once)."""
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

    def failure(self, store: str, why: str, events: int) -> None:
        """``events`` of ``store`` not delivered, because of ``why``."""
        self.failed[store] += events
        self.failures[f"{store}: {why}"] += events
        if self.first_failure is None:
            self.first_failure = f"{store}: {why}"


class Sink(Protocol):
    """Where the tills deliver: each call answers None once delivered, else why not (what
    the edge answered, or why it could not be reached: never a value that was sent)."""

    problems: dict[str, str]
    """Store -> why its latest failed attempt failed, while the sink may still be retrying
    (said at once, and given as the reason of requests the end of the run cut off)."""

    async def send(self, store: str, events: list[tuple[str, dict[str, Any]]]) -> str | None: ...
    async def send_poslog(self, store: str, tx: Transaction) -> str | None: ...
    async def close(self) -> None: ...


class EdgeSink:
    """Tills posting to their store's edge; POSLog tills write files to its drop folder
    (or post them to ``/v1/poslog`` when no folder is given)."""

    def __init__(self, edges: dict[str, str], drop_folders: dict[str, Path] | None = None):
        self.edges = edges
        self.drop_folders = drop_folders or {}
        self.client = httpx.AsyncClient(timeout=15)
        self.problems: dict[str, str] = {}

    async def send(self, store: str, events: list[tuple[str, dict[str, Any]]]) -> str | None:
        body = [{"type": event, **jsonable(record)} for event, record in events]
        return await self._post(store, f"{self.edges[store]}/v1/events", json=body)

    async def send_poslog(self, store: str, tx: Transaction) -> str | None:
        document = poslog(tx)
        folder = self.drop_folders.get(store)
        if folder is not None:  # written aside, then renamed: the edge never sees half a file
            name = f"{tx.sale['receipt_number']}-{tx.sale['event_id'][:8]}.xml"
            partial = folder / f".{name}.part"
            try:
                await asyncio.to_thread(partial.write_bytes, document)
                await asyncio.to_thread(partial.rename, folder / name)
            except OSError as exc:
                return f"cannot write to the drop folder {folder} ({exc.strerror or exc})"
            return None
        return await self._post(
            store,
            f"{self.edges[store]}/v1/poslog",
            content=document,
            headers={"content-type": "application/xml"},
        )

    async def _post(self, store: str, url: str, **kwargs: Any) -> str | None:
        """POST like a till: retry (same event ids) while the edge is unreachable or full
        (503); None once accepted, else why not."""
        why = f"{url}: no answer"
        for attempt in range(6):
            try:
                response = await self.client.post(url, **kwargs)
            except httpx.TransportError as exc:
                log.debug("till could not reach %s (%s); retrying", url, exc)
                why = f"{url}: unreachable ({type(exc).__name__}: {exc or 'no detail'})"
            else:
                if response.status_code < 300:
                    kept = set_aside(response)  # a POSLog document's: taken, not published
                    return None if kept is None else f"{url}: {kept}"
                why = f"{url}: {refusal(response)}"
                if response.status_code != 503:  # 503: outbox full, come back later
                    return why
            self.problems[store] = why
            await asyncio.sleep(min(0.2 * 2**attempt, 5))
        return why

    async def close(self) -> None:
        await self.client.aclose()


def refusal(response: httpx.Response) -> str:
    """An edge's refusal in a line: its status and first problem (field and message, which
    the edge masks), the index of the event in the request left out so that one reason
    counts every request it refused (``422 rule: store_id: this edge serves store 'S002'
    only; the event names another``)."""
    try:
        body = response.json()
        problem = body["problems"][0]
        field_name = re.sub(r"^\[\d+\]\.?", "", str(problem["field"])) or "request"
        said = f"{body['error']}: {field_name}: {problem['message']}"
    except (ValueError, LookupError, TypeError):
        said = response.reason_phrase or "no reason given"
    return mask_pans(f"{response.status_code} {said}")[:300]


def set_aside(response: httpx.Response) -> str | None:
    """The first transaction an edge set aside from a POSLog document it took (an answer of
    202 that publishes nothing of it), as :func:`refusal` words it; None if none was."""
    try:
        kept = response.json().get("set_aside") or []
        first = kept[0] if kept else None
        said = None if first is None else f"{first['kind']} ({first['cause']}): {first['reason']}"
    except (ValueError, LookupError, TypeError, AttributeError):
        return None
    return None if said is None else mask_pans(f"{response.status_code} set aside: {said}")[:300]


class KafkaSink:
    """Events published straight to Kafka, as edges would publish them."""

    def __init__(self, producer: Any, codec: AvroCodec) -> None:
        self.producer = producer
        self.codec = codec
        self.problems: dict[str, str] = {}  # the producer retries by itself, and says nothing

    async def send(self, store: str, events: list[tuple[str, dict[str, Any]]]) -> str | None:
        futures = [
            await self.producer.send(
                EVENT_TOPICS[event].name, self.codec.encode(event, record), key=store_key(store)
            )
            for event, record in events
        ]
        await asyncio.gather(*futures)
        return None

    async def send_poslog(self, store: str, tx: Transaction) -> str | None:
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
                receipts_per_second=rate / EVENTS_PER_TRANSACTION / len(stores),
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
        """Run until ``duration`` seconds have passed or ``stop`` is set, then give the tills
        :data:`SETTLE_SECONDS` at most to settle: the run's length is bounded by the clock,
        however slowly its edges answer."""
        stop = stop or asyncio.Event()
        trading = asyncio.create_task(self._trade(stop, time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=duration)
        stop.set()
        await asyncio.wait([trading], timeout=SETTLE_SECONDS)
        if not trading.done():  # requests still waiting for an edge: counted as failed
            trading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trading
        await self.sink.close()
        return self.stats

    async def _trade(self, stop: asyncio.Event, started: float) -> None:
        """The store-days: opened, traded until ``stop``, each till settled, then closed."""
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
        try:
            await stop.wait()
            await asyncio.gather(*tills)
            for store in self.traffic:  # once every till of the store has settled
                settled = [self.shifts[(store, t)].closed_at for t in range(self.tills)]
                closed = max([datetime.now(UTC), *(at for at in settled if at is not None)])
                await self._deliver(store, [self._store_day("STORE_DAY_CLOSE", store, closed)])
            await asyncio.gather(*tasks)
        finally:  # cut off at the end of the settling time: nothing left running
            for task in (*tills, *tasks):
                task.cancel()
            await asyncio.gather(*tills, *tasks, return_exceptions=True)

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
        try:
            why = await self.sink.send(store, events)
        except asyncio.CancelledError:
            self.stats.failure(store, self._cut_off(store), len(events))
            raise
        if why is None:
            self.stats.accepted[store] += len(events)
        elif bad:
            self.stats.rejected[store] += len(events)
        else:
            self.stats.failure(store, why, len(events))
        return why is None

    async def _deliver_poslog(self, store: str, tx: Transaction) -> None:
        events = len(tx.poslog_events)
        self.stats.sent[store] += events
        try:
            why = await self.sink.send_poslog(store, tx)
        except asyncio.CancelledError:
            self.stats.failure(store, self._cut_off(store), events)
            raise
        if why is None:
            self.stats.accepted[store] += events
            self.stats.poslog_files += 1
        else:
            self.stats.failure(store, why, events)

    def _cut_off(self, store: str) -> str:
        """Why a request the end of the run cut off failed: what its last try met, if any."""
        last = self.sink.problems.get(store)
        return f"{CUT_OFF} (last try: {last})" if last else CUT_OFF
