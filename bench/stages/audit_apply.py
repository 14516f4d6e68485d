"""Stage: the sales audit (``tillstream consume audit``) applying whole store-days against a
bare ``aiokafka`` consumer decoding the same records, on SQLite and PostgreSQL.

The workload is the simulator's trading day for six stores of three tills
(:func:`bench.workload.store_days`): the store-day opened, sign-ons and floats, receipts with
their payments, pickups, declarations, settlements, the store-day closed; on three topics of
the bench's own, like the sales, payments and till-event topics (keyed by store, so
co-partitioned). The audit stores each event as a fact and re-audits every store-day a batch
touched, as it does live (a busy store-day no more often than its cost allows: batches
leave it to the refresh in between, ``audit/pacing.py``).

As in ``consumer_apply`` (whose ERP figure sets the target), each round runs under a fresh
consumer group on a fresh database; the clock starts at the first batch and stops when the
last record's batch has committed and every store-day left to the refresh has been audited
(ours), or when the last record is decoded (reference).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from bench.env import BenchEnv
from bench.harness import Figure, paired, ratio, stage_result
from bench.stages.consumer_apply import (
    TARGET,
    Databases,
    MeasuredService,
    apply_rate,
    bare_decode_rate,
    create_topic,
    delete_topics,
    dlq_topic,
    service_codec,
    unique,
)
from bench.workload import store_days
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import store_key
from tillstream_consumers.audit import SalesAudit
from tillstream_consumers.runtime.applier import BatchOutcome
from tillstream_consumers.runtime.runner import RunnerConfig

_TOPIC_OF = {"sale": 0, "payment": 1, "till_event": 2}


class SettledAudit(MeasuredService):
    """Done once the audit has applied its target and audited every store-day left dirty:
    the flags are then what the events say, so the time includes all the auditing."""

    def batch_committed(self, outcome: BatchOutcome, started: float) -> None:
        if self.finished is None and self.applied >= self.target:
            audit = cast(SalesAudit, self.consumer)
            audit.settle(self._database(), datetime.now(UTC))
        super().batch_committed(outcome, started)


def audit_consumer(settings: Settings, name: str, topics: tuple[str, ...]) -> SalesAudit:
    """The sales audit under consumer group ``name``, reading ``topics``."""
    grouped = SalesAudit.in_group(name)  # its migrations stay the audit's own
    cls = type("BenchSalesAudit", (grouped,), {"topics": topics})
    return cast(SalesAudit, cls(settings))


async def publish(
    settings: Settings,
    codec: AvroCodec,
    topics: tuple[str, ...],
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    """Each event to its type's topic, keyed by store, as the edges publish them."""
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topics[_TOPIC_OF[event]],
                codec.encode(event, record),
                key=store_key(record["store_id"]),
            )
            for event, record in events
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def run(env: BenchEnv) -> dict[str, Any]:
    wanted = 2_000 if env.quick else 20_000
    settings = env.settings
    codec = env.codec()
    stem = unique("bench.audit-apply")
    topics = (f"{stem}.sales", f"{stem}.payments", f"{stem}.till-events")
    created = list(topics)
    dbs = Databases(env)
    for topic in topics:
        await create_topic(settings, topic)
    try:
        events = store_days(wanted)
        count = len(events)
        await publish(settings, codec, topics, events)
        figures: dict[str, Figure] = {}
        reference: dict[str, Figure] = {}
        ratios: dict[str, dict[str, Any]] = {}
        for kind in dbs.kinds():

            async def ours(kind: str = kind) -> float:
                group = unique(f"bench-audit-apply-{kind}")
                created.append(dlq_topic(group))
                url = dbs.new(kind, "audit")
                try:
                    service = SettledAudit(
                        audit_consumer(settings, group, topics),
                        settings,
                        RunnerConfig(db_url=url, batch_size=500),
                        target=count,
                    )
                    return await apply_rate(service)
                finally:
                    dbs.drop(url)

            async def bare() -> float:
                return await bare_decode_rate(settings, service_codec(settings), topics, count)

            mine, theirs = await paired(ours, bare, rounds=env.rounds, unit="events/s")
            figures[kind] = mine
            reference[kind] = theirs
            ratios[kind] = ratio(mine, theirs)
    finally:
        await delete_topics(settings, created)
    met = all(r["median"] is not None and r["median"] >= TARGET for r in ratios.values())
    kinds = {k: sum(1 for e, _ in events if e == k) for k in _TOPIC_OF}
    notes = (
        f"{count} events of one trading day of 6 stores x 3 tills ({kinds['sale']} sales, "
        f"{kinds['payment']} payments, {kinds['till_event']} till events) on three topics of "
        f"the bench's own ({settings.topic_partitions} partitions each), batch_size 500; fresh "
        "group and database per round; timed from the first batch to the last commit with "
        "every store-day audited (ours) or the last decode (reference). The target is the "
        "ERP's (consumer_apply)."
    )
    if not env.postgres_url:
        notes += " PostgreSQL not available: its figure is skipped."
    return stage_result(
        figures=figures,
        reference_name="bare AIOKafkaConsumer (same settings, fresh group) + codec.decode",
        reference=reference,
        ratios=ratios,
        target=f"at least {TARGET} of the bare consumer's rate (the ERP's target)",
        met=met,
        notes=notes,
    )
