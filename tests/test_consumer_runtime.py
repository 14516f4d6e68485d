"""The consumer runtime against the real broker: exactly-once effects, dead letters, replay."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from tests.consumer_support import ConsumerProcess, cli, publish, running, scalar, wait_until
from tests.runtime_consumers import Effects
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import SALES, store_key
from tillstream.dev.samples import sample_sale
from tillstream_consumers.example import VisitCounter
from tillstream_consumers.runtime.db import Database


def _group(consumer: type[VisitCounter]) -> type[VisitCounter]:
    """The example consumer under a fresh group id, so tests share the broker safely."""
    return type("Visits", (consumer,), {"name": f"visits-{uuid.uuid4().hex[:8]}"})


async def test_example_consumer_counts_each_visit_once(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    customer = f"C-{uuid.uuid4().hex[:6]}"
    sales = [sample_sale("S-RT1", customer=customer) for _ in range(20)]
    # A till resent two of them (same event ids): still 20 visits.
    await publish(kafka_topics, codec, [("sale", s) for s in sales + sales[:2]])
    url = f"sqlite:///{tmp_path / 'visits.db'}"
    count = "SELECT n FROM visits WHERE customer_id = ?"
    async with running(_group(VisitCounter)(kafka_topics), kafka_topics, url):
        await wait_until(lambda: scalar(url, count, (customer,)) == 20, what="20 visits")


def _sales(stores: list[str], n: int) -> list[tuple[str, dict[str, Any]]]:
    return [("sale", sample_sale(stores[i % len(stores)], customer=None)) for i in range(n)]


def _effects(url: str, prefix: str) -> tuple[int, int]:
    """(rows, distinct event ids) applied for stores whose id starts with ``prefix``."""
    rows = scalar(url, "SELECT COUNT(*) FROM effects WHERE store_id LIKE ?", (prefix + "%",))
    distinct = scalar(
        url, "SELECT COUNT(DISTINCT event_id) FROM effects WHERE store_id LIKE ?", (prefix + "%",)
    )
    return rows or 0, distinct or 0


async def test_consumer_killed_mid_batch_applies_each_event_exactly_once(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    prefix = f"K{uuid.uuid4().hex[:6]}-"
    total = 1500
    await publish(kafka_topics, codec, _sales([f"{prefix}{i}" for i in range(9)], total))
    url = f"sqlite:///{tmp_path / 'effects.db'}"
    process = ConsumerProcess(
        "tests.runtime_consumers:Effects",
        kafka_topics.kafka_bootstrap_servers,
        url,
        tmp_path / "consumer",
        env={
            "TILLSTREAM_TEST_GROUP": f"effects-{uuid.uuid4().hex[:8]}",
            "TILLSTREAM_TEST_DELAY": "0.3",  # each batch takes 0.3 s or more: kills land inside
            "TILLSTREAM_TEST_DELAY_STORES": prefix,
            "TILLSTREAM_CONSUMER_BATCH_SIZE": "100",
        },
    )
    for kill_after in (300, 800):
        process.start()
        await wait_until(lambda k=kill_after: _effects(url, prefix)[0] >= k, what=f"{kill_after}")
        process.kill()  # SIGKILL: no clean-up of any kind
    process.start()
    try:
        await wait_until(lambda: _effects(url, prefix)[0] >= total, what="all sales applied")
        await asyncio.sleep(2)  # anything applied twice would show up by now
        assert _effects(url, prefix) == (total, total)
        assert scalar(url, "SELECT COUNT(*) - COUNT(DISTINCT event_id) FROM effects") == 0
        assert process.stop() == 0  # SIGTERM: finish the batch, commit, leave the group
    finally:
        process.kill()


async def test_three_instances_one_stopped_midstream_leave_exact_effects(
    kafka_topics: Settings, codec: AvroCodec, postgres_url: str
) -> None:
    prefix = f"R{uuid.uuid4().hex[:6]}-"
    total = 3000
    slow = type(
        "SlowEffects",
        (Effects,),
        {
            "name": f"effects-{uuid.uuid4().hex[:8]}",
            "delay_per_batch": 0.2,
            "delay_stores": prefix,
        },
    )
    async with (
        running(slow(kafka_topics), kafka_topics, postgres_url, batch_size=100) as first,
        running(slow(kafka_topics), kafka_topics, postgres_url, batch_size=100) as second,
        running(slow(kafka_topics), kafka_topics, postgres_url, batch_size=100) as third,
    ):
        trio = (first, second, third)
        # The group settles first (each instance one partition), then the sales come.
        await wait_until(
            lambda: (
                all(s.assignment() for s in trio)
                and sum(len(s.assignment()) for s in trio) == kafka_topics.topic_partitions
            ),
            what="the three instances sharing the partitions",
        )
        await publish(kafka_topics, codec, _sales([f"{prefix}{i}" for i in range(30)], total))
        await wait_until(lambda: _effects(postgres_url, prefix)[0] >= 300, what="300 applied")
        assert _effects(postgres_url, prefix)[0] < total  # still mid-stream
        first.request_stop()  # leaves the group: the others take its partitions
        await wait_until(
            lambda: _effects(postgres_url, prefix)[0] >= total, what="all sales applied"
        )
        await asyncio.sleep(2)
    assert _effects(postgres_url, prefix) == (total, total)


async def test_poison_record_goes_to_dead_letters_and_replays_once_after_a_fix(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = f"P{uuid.uuid4().hex[:6]}"
    group = f"effects-{uuid.uuid4().hex[:8]}"
    receipt = f"POISON-{uuid.uuid4().hex[:6]}"
    poison = sample_sale(store, customer=None)
    poison["receipt_number"] = receipt
    good = [sample_sale(store, customer=None) for _ in range(10)]
    await publish(kafka_topics, codec, [("sale", s) for s in good[:5]] + [("sale", poison)])
    producer = make_producer(kafka_topics)
    await producer.start()
    garbage = await producer.send_and_wait(SALES.name, b"\x00not avro", key=store_key(store))
    await producer.stop()
    await publish(kafka_topics, codec, [("sale", s) for s in good[5:]])

    url = f"sqlite:///{tmp_path / 'effects.db'}"
    bootstrap = kafka_topics.kafka_bootstrap_servers
    consumer = type("PoisonEffects", (Effects,), {"name": group})(kafka_topics)
    async with running(consumer, kafka_topics, url):
        # The records around the poison are applied; the consumer moved on.
        await wait_until(lambda: _effects(url, store)[0] == 10, what="the 10 good sales")
        dead = REGISTRY.get_sample_value(
            "tillstream_consumer_dlq_records_total", {"consumer": group, "reason": "invalid"}
        )
        assert dead is not None and dead >= 1
    shown = cli(bootstrap, "dlq", "show", group, "--json")
    assert shown.returncode == 0, shown.stderr
    letters = [json.loads(line) for line in shown.stdout.splitlines()]
    assert all(x["consumer"] == group for x in letters)
    (invalid,) = [x for x in letters if receipt in x["error"]]
    assert invalid["reason"] == "invalid"
    assert invalid["source"]["topic"] == SALES.name
    assert invalid["error"] == f"PermanentError: receipt {receipt} cannot be applied"
    (undecodable,) = [
        x
        for x in letters
        if x["source"]
        == {"topic": SALES.name, "partition": garbage.partition, "offset": garbage.offset}
    ]
    assert undecodable["reason"] == "undecodable"

    Database(url).execute("INSERT INTO fixes (receipt) VALUES (?)", (receipt,))
    replayed = cli(bootstrap, "dlq", "replay", group)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {len(letters)} dead letter(s)" in replayed.stdout
    again = cli(bootstrap, "dlq", "replay", group)
    assert "replayed 0 dead letter(s)" in again.stdout  # progress is kept per letter
    async with running(consumer, kafka_topics, url):
        await wait_until(lambda: _effects(url, store)[0] == 11, what="the fixed poison applied")
        await asyncio.sleep(2)
    assert _effects(url, store) == (11, 11)


async def test_database_outage_is_retried_without_skipping_or_reapplying(
    kafka_topics: Settings, codec: AvroCodec
) -> None:
    from tillstream.dev.postgres import PostgresServer

    root = Path(tempfile.mkdtemp(prefix="tillstream-pg-outage-"))
    server = PostgresServer(root)
    server.start()
    prefix = f"O{uuid.uuid4().hex[:6]}-"
    stores = [f"{prefix}{i}" for i in range(6)]
    group = f"effects-{uuid.uuid4().hex[:8]}"
    consumer = type("OutageEffects", (Effects,), {"name": group})(kafka_topics)
    try:
        async with running(consumer, kafka_topics, server.url, batch_size=50):
            await publish(kafka_topics, codec, _sales(stores, 400))
            await wait_until(lambda: _effects(server.url, prefix)[0] >= 400, what="first 400")
            server.stop("immediate")  # the database crashes ...
            await publish(kafka_topics, codec, _sales(stores, 400))  # ... while sales go on
            await asyncio.sleep(3)
            server.start()  # ... and comes back
            await wait_until(lambda: _effects(server.url, prefix)[0] >= 800, what="all 800")
            await asyncio.sleep(2)
        assert _effects(server.url, prefix) == (800, 800)
        retried = REGISTRY.get_sample_value(
            "tillstream_consumer_failures_total", {"consumer": group, "kind": "transient"}
        )
        assert retried is not None and retried > 0
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
