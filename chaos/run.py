"""One chaos run: stand the system up, sell while faults strike, let it settle, check."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from chaos.audit import planted_flags
from chaos.check import (
    Stage,
    check_analytics,
    check_audit,
    check_crm,
    check_erp,
    check_kafka,
    count_dead_letters,
    partitions_of,
)
from chaos.driver import Driver, Progress
from chaos.expected import Expected
from chaos.faults import Injected, Schedule, Timing
from chaos.fleet import check_fleet
from chaos.rig import Rig
from tillstream.core.kafka import make_consumer
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.loader import load_consumer

Say = Callable[[str], None]
REPORT_EVERY = 10.0


@dataclass
class Outcome:
    stages: list[Stage]
    faults: list[Injected]
    progress: Progress
    seconds: float
    settled: bool
    dead_letters: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        return self.stages[0].expected if self.stages else 0

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.stages) + self.progress.given_up

    @property
    def duplicated(self) -> int:
        return sum(s.duplicated for s in self.stages)

    @property
    def wrong(self) -> int:
        return sum(s.wrong for s in self.stages) + self.progress.wrongly_accepted

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.wrong or self.dead_letters)

    def summary(self) -> str:
        return (
            f"chaos: events={self.events} lost={self.lost} duplicated={self.duplicated} "
            f"wrong={self.wrong} faults={len(self.faults)}"
        )


async def run(rig: Rig, timing: Timing, say: Say, *, settle_within: float) -> Outcome:
    started = time.monotonic()
    driver = Driver(rig.plan, lambda store: rig.edges[store].url)
    schedule = Schedule(rig, timing, lambda: driver.done, say)
    # Paced so that the faults strike while the tills still sell; no slower than that.
    driver.rate = rig.plan.events / (schedule.estimate_seconds() * 1.2)
    reporter = asyncio.create_task(_report(driver, schedule, say, started))
    try:
        progress, faults = await asyncio.gather(driver.run(), schedule.run())
    finally:
        reporter.cancel()
    say(
        f"chaos: tills done in {time.monotonic() - started:.0f}s: {progress.accepted} events "
        f"accepted, {progress.refused} with card numbers refused, {progress.retries} retries"
    )
    settled = await settle(rig, say, settle_within)
    say("chaos: checking ...")
    expected = await asyncio.to_thread(Expected.of, rig.plan)
    stages = [await check_kafka(rig.settings, expected)]
    for name, check in (("erp", check_erp), ("crm", check_crm), ("analytics", check_analytics)):
        db = Database(rig.db_url(name))
        try:
            stages.append(await asyncio.to_thread(check, db, expected))
        finally:
            db.close()
    db = Database(rig.db_url("audit"))
    try:
        planted = await asyncio.to_thread(planted_flags, rig.plan)
        stages.append(await asyncio.to_thread(check_audit, db, planted, expected))
    finally:
        db.close()
    db = Database(rig.db_url("fleet"))
    try:
        stages.append(await asyncio.to_thread(check_fleet, db, rig.outages, rig.watch))
    finally:
        db.close()
    return Outcome(
        stages,
        faults,
        progress,
        time.monotonic() - started,
        settled,
        dead_letters=await count_dead_letters(rig.settings),
        notes=progress.unexpected[:5],
    )


async def _report(driver: Driver, schedule: Schedule, say: Say, started: float) -> None:
    while True:
        await asyncio.sleep(REPORT_EVERY)
        elapsed = time.monotonic() - started
        p = driver.progress
        fault = f", fault: {schedule.current}" if schedule.current else ""
        say(
            f"chaos: {elapsed:5.0f}s  {p.accepted:>9} events accepted "
            f"({driver.done:4.0%}, {p.accepted / elapsed:6.0f}/s), {len(schedule.injected)} "
            f"faults done{fault}"
        )


async def settle(rig: Rig, say: Say, within: float) -> bool:
    """Wait until every edge's outbox is empty, every consumer has read every partition of
    its topics to the end and the audit has audited every store-day it stored facts for.
    False if that did not happen within ``within`` seconds."""
    deadline = time.monotonic() + within
    last = ""
    while time.monotonic() < deadline:
        backlog = await _edge_backlog(rig)
        lag = await _consumer_lag(rig)
        dirty = await asyncio.to_thread(_audit_dirty, rig.db_url("audit"))
        state = f"outbox backlog {backlog}, consumer lag {lag}, store-days to audit {dirty}"
        if backlog == 0 and lag == 0 and dirty == 0:
            say(f"chaos: settled ({state})")
            return True
        if state != last:
            say(f"chaos: settling: {state}")
            last = state
        await asyncio.sleep(2)
    say(f"chaos: did not settle within {within:.0f}s ({last}); checking anyway")
    return False


async def _edge_backlog(rig: Rig) -> int:
    total = 0
    async with httpx.AsyncClient(timeout=5) as client:
        for edge in rig.edges.values():
            try:
                text = (await client.get(f"{edge.url}/metrics")).text
            except httpx.HTTPError:
                return -1  # unknown: not settled
            for family in text_string_to_metric_families(text):
                if family.name == "tillstream_edge_outbox_depth":
                    total += int(sum(s.value for s in family.samples))
    return total


async def _consumer_lag(rig: Rig) -> int:
    """Records between each consumer's stored offsets and the ends of its partitions."""
    kinds = {kind: load_consumer(kind) for kind in ("erp", "crm", "analytics", "audit")}
    topics = sorted({t for cls in kinds.values() for t in cls.topics})
    partitions = await partitions_of(rig.settings, topics)
    consumer = make_consumer(rig.settings, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    lag = 0
    for kind, cls in kinds.items():
        stored = await asyncio.to_thread(_stored_offsets, rig.db_url(kind), cls.name)
        lag += sum(
            max(0, end - stored.get((tp.topic, tp.partition), 0))
            for tp, end in ends.items()
            if tp.topic in cls.topics
        )
    return lag


def _audit_dirty(url: str) -> int:
    """Store-days whose facts the audit stored and has not audited yet (-1: unknown)."""
    try:
        with contextlib.closing(Database(url)) as db:
            row = db.fetchone("SELECT COUNT(*) FROM audit_dirty")
    except Exception:  # down, or not migrated yet: not settled
        return -1
    return int(row[0]) if row else -1


def _stored_offsets(url: str, consumer: str) -> dict[tuple[str, int], int]:
    try:
        with contextlib.closing(Database(url)) as db:
            rows = db.fetchall(
                "SELECT topic, part, next_offset FROM runtime_offsets WHERE consumer = ?",
                (consumer,),
            )
    except Exception:  # the database is down, or not migrated yet: not settled either way
        return {}
    return {(str(t), int(p)): int(n) for t, p, n in rows}
