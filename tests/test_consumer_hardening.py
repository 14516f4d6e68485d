"""The consumer runtime against the real broker (issue #11): bad SQL is dead-lettered, not
retried for ever; /readyz and the ready gauge agree; a second group of a consumer shares
its tables; records on the wrong partition are counted; read APIs take a bearer token;
records the broker refuses as too large do not hold the consumer up."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import NewTopic
from prometheus_client import REGISTRY
from pydantic import SecretStr

from tests.consumer_support import ConsumerProcess, cli, publish, running, scalar, wait_until
from tests.runtime_consumers import BadSql, Effects, Relay
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_admin, make_consumer, make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import SALES, store_key
from tillstream.dev.ports import free_port
from tillstream.dev.samples import sample_sale
from tillstream_consumers.runtime.applier import Applier
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.deadletter import topic_for
from tillstream_consumers.runtime.partitioning import expected_partition


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _effects(url: str, store: str) -> int:
    return int(scalar(url, "SELECT COUNT(*) FROM effects WHERE store_id = ?", (store,)) or 0)


_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def _sale(
    store: str, receipt: str | None = None, *, padding: int = 0
) -> tuple[str, dict[str, Any]]:
    """A sample sale; ``padding`` random bytes (as hex, its digits as letters: a run of
    digits may pass for a card number) in a line's description make it big (lz4 cannot
    shrink them much; a receipt number that long would break a core rule)."""
    sale = sample_sale(store, customer=None)
    if receipt is not None:
        sale["receipt_number"] = receipt
    if padding:
        sale["lines"][0]["description"] = os.urandom(padding).hex().translate(_LETTERS)
    return ("sale", sale)


async def _create_topic(settings: Settings, name: str, partitions: int, **configs: str) -> None:
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql", "duckdb"])
def engine_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'consumer.db'}"
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'consumer.duckdb'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


# -- bad SQL and readiness ------------------------------------------------------------


async def test_bad_sql_in_apply_is_dead_lettered_within_seconds(
    kafka_topics: Settings, codec: AvroCodec, engine_url: str
) -> None:
    store = f"B{uuid.uuid4().hex[:8]}"
    group = f"badsql-{uuid.uuid4().hex[:8]}"
    events = [_sale(store) for _ in range(3)] + [_sale(store, f"BADSQL-{store}")]
    await publish(kafka_topics, codec, events + [_sale(store) for _ in range(3)])
    started = time.monotonic()
    consumer = type("Bad", (BadSql.in_group(group),), {"bad_receipt": f"BADSQL-{store}"})
    async with running(consumer(kafka_topics), kafka_topics, engine_url):
        await wait_until(
            lambda: (
                _effects(engine_url, store) == 6
                and _metric(
                    "tillstream_consumer_dlq_records_total", consumer=group, reason="handler-error"
                )
                == 1
            ),
            timeout=30,
            what="the bad record dead-lettered and the 6 good ones applied",
        )
        took = time.monotonic() - started
    print(f"bad SQL on {engine_url.split(':')[0]}: dead-lettered {took:.1f}s after start")
    assert took < 20  # start, join the group, read the topic's history, one retry round
    assert _metric("tillstream_consumer_failures_total", consumer=group, kind="transient") == 0


async def test_readyz_and_the_ready_gauge_agree_while_the_database_is_locked(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    group = f"locked-{uuid.uuid4().hex[:8]}"
    store = f"L{uuid.uuid4().hex[:8]}"
    port = free_port()

    def gauge() -> float:
        return _metric("tillstream_consumer_ready", consumer=group)

    consumer = Effects.in_group(group)(kafka_topics)
    async with (
        running(consumer, kafka_topics, url, listen=("127.0.0.1", port)) as service,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http,
    ):
        await wait_until(lambda: service.ready, what="ready")
        await wait_until(lambda: scalar(url, "SELECT 1 FROM runtime_offsets") is not None)
        assert (await http.get("/readyz")).status_code == 200
        assert gauge() == 1
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # another writer holds the database
        try:
            await publish(kafka_topics, codec, [_sale(store)])
            await wait_until(
                lambda: (
                    _metric("tillstream_consumer_failures_total", consumer=group, kind="transient")
                    > 0
                ),
                timeout=60,
                what="a transient failure (SQLITE_BUSY after the busy timeout)",
            )
            answer = await http.get("/readyz")
            assert (answer.status_code, answer.json()["ready"], gauge()) == (503, False, 0)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        await wait_until(lambda: _effects(url, store) == 1, what="the sale applied")
        await wait_until(lambda: gauge() == 1, what="ready again")
        assert (await http.get("/readyz")).status_code == 200


# -- migrations per consumer ----------------------------------------------------------


def test_a_second_group_of_a_consumer_finds_its_migrations_done(
    db_url: str, codec: AvroCodec
) -> None:
    for group in ("effects-live", "effects-rebuild"):  # --group runs it under another group
        db = Database(db_url)
        Applier(Effects.in_group(group)(), db, codec.encode).prepare()
        db.close()
    rows = Database(db_url).fetchall(
        "SELECT component, version FROM schema_migrations WHERE component <> 'runtime' "
        "ORDER BY version"
    )
    assert rows == [(Effects.name, 1), (Effects.name, 2)]


def test_migrations_recorded_under_a_group_before_are_taken_over(
    db_url: str, codec: AvroCodec
) -> None:
    db = Database(db_url)
    db.migrate("effects-rebuild", list(Effects.migrations))  # what --group recorded before
    Applier(Effects.in_group("effects-rebuild")(), db, codec.encode).prepare()
    done = db.fetchall(
        "SELECT version FROM schema_migrations WHERE component = ? ORDER BY version",
        (Effects.name,),
    )
    assert done == [(1,), (2,)]  # and CREATE TABLE effects did not run twice
    db.close()


async def test_consume_with_another_group_starts_on_a_database_already_migrated(
    kafka_topics: Settings, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {"TILLSTREAM_TEST_GROUP": f"effects-{uuid.uuid4().hex[:8]}"}
    bootstrap = kafka_topics.kafka_bootstrap_servers
    spec = "tests.runtime_consumers:Effects"
    live = ConsumerProcess(spec, bootstrap, url, tmp_path / "live", env=env).start()
    assert live.stop() == 0
    rebuild = ConsumerProcess(
        spec, bootstrap, url, tmp_path / "rebuild", env=env, args=["--group", "effects-rebuild"]
    )
    try:
        rebuild.start(timeout=40)  # before: "table effects already exists", retried for ever
        assert rebuild.stop() == 0
    finally:
        rebuild.kill()


# -- keys on the wrong partition ------------------------------------------------------


async def test_records_on_another_partition_than_their_key_are_counted_and_logged(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = f"M{uuid.uuid4().hex[:8]}"
    key = store_key(store)
    partitions = kafka_topics.topic_partitions
    right = expected_partition(key, partitions)
    wrong = (right + 1) % partitions
    producer = make_producer(kafka_topics)
    await producer.start()
    try:  # a third-party producer with another partitioner, then ours
        _, misplaced = _sale(store)
        sent = await producer.send_and_wait(
            SALES.name, codec.encode("sale", misplaced), key=key, partition=wrong
        )
        _, placed = _sale(store)
        ours = await producer.send_and_wait(SALES.name, codec.encode("sale", placed), key=key)
    finally:
        await producer.stop()
    assert ours.partition == right  # expected_partition is what the producers do

    url = f"sqlite:///{tmp_path / 'routing.db'}"
    group = f"routing-{uuid.uuid4().hex[:8]}"
    with caplog.at_level(logging.WARNING, logger="tillstream_consumers.runtime.partitioning"):
        async with running(Effects.in_group(group)(kafka_topics), kafka_topics, url):
            await wait_until(lambda: _effects(url, store) == 2, what="both sales applied")
    counted = _metric(
        "tillstream_consumer_misrouted_records_total", consumer=group, topic=SALES.name
    )
    assert counted == 1
    (logged,) = [r.getMessage() for r in caplog.records if "belongs to partition" in r.getMessage()]
    assert f"{SALES.name}[{wrong}]@{sent.offset}" in logged
    assert f"partition {right} of {partitions}" in logged
    assert store not in logged  # keys may be customer ids: never logged


# -- read APIs ------------------------------------------------------------------------


async def test_read_apis_need_the_bearer_token_when_one_is_set(
    kafka_topics: Settings, tmp_path: Path
) -> None:
    token = f"token-{uuid.uuid4().hex}"
    cfg = kafka_topics.model_copy(update={"consumer_api_token": SecretStr(token)})
    group = f"api-{uuid.uuid4().hex[:8]}"
    port = free_port()
    url = f"sqlite:///{tmp_path / 'api.db'}"
    async with (
        running(Effects.in_group(group)(cfg), cfg, url, listen=("127.0.0.1", port)) as service,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http,
    ):
        await wait_until(lambda: service.ready, what="ready")
        bare = await http.get("/v1/effects")
        assert bare.status_code == 401
        assert bare.headers["www-authenticate"].startswith("Bearer")
        wrong = await http.get("/v1/effects", headers={"Authorization": f"Bearer {token}x"})
        assert wrong.status_code == 401
        assert token not in wrong.text
        basic = await http.get("/v1/effects", headers={"Authorization": f"Basic {token}"})
        assert basic.status_code == 401
        right = await http.get("/v1/effects", headers={"Authorization": f"Bearer {token}"})
        assert right.status_code == 200
        assert right.json()["effects"] >= 0
        for path in ("/healthz", "/readyz", "/metrics"):  # probes and scrapers send no token
            assert (await http.get(path)).status_code == 200, path
    assert _metric("tillstream_consumer_api_rejected_total", consumer=group) == 3


async def test_read_apis_are_open_without_a_token(kafka_topics: Settings, tmp_path: Path) -> None:
    group = f"open-{uuid.uuid4().hex[:8]}"
    port = free_port()
    url = f"sqlite:///{tmp_path / 'open.db'}"
    async with (
        running(
            Effects.in_group(group)(kafka_topics), kafka_topics, url, listen=("127.0.0.1", port)
        ) as service,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http,
    ):
        await wait_until(lambda: service.ready, what="ready")
        assert (await http.get("/v1/effects")).status_code == 200


# -- records the broker refuses -------------------------------------------------------


async def test_a_published_event_too_large_for_its_topic_is_set_aside_and_the_rest_go_out(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    relay_topic = f"tillstream.test.relay-{uuid.uuid4().hex[:8]}"
    await _create_topic(kafka_topics, relay_topic, 1, **{"max.message.bytes": "4000"})
    store = f"T{uuid.uuid4().hex[:8]}"
    big = _sale(store, "BIG", padding=8000)  # ~16 kB
    small = [_sale(store) for _ in range(4)]
    await publish(kafka_topics, codec, [*small[:2], big, *small[2:]])
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    group = f"relay-{uuid.uuid4().hex[:8]}"
    consumer = type("SmallRelay", (Relay,), {"name": group, "relay_topic": relay_topic})
    async with running(consumer(kafka_topics), kafka_topics, url):
        await wait_until(lambda: _effects(url, store) == 5, what="the 5 sales applied")
        await wait_until(
            lambda: scalar(url, "SELECT COUNT(*) FROM runtime_outbox") == 0,
            timeout=60,
            what="the outbox emptied",
        )
    (error,) = Database(url).fetchall("SELECT error FROM runtime_outbox_refused")
    assert error[0].startswith("MessageSizeTooLargeError")
    refused = _metric(
        "tillstream_consumer_sends_refused_total",
        consumer=group,
        what="published",
        reason="too_large",
    )
    assert refused == 1
    relayed = await _store_events(kafka_topics, codec, relay_topic, store, expect=4)
    assert relayed == {s["event_id"] for _, s in small}


async def _store_events(
    settings: Settings, codec: AvroCodec, topic: str, store: str, expect: int
) -> set[str]:
    """Event ids of ``store`` on ``topic``, read from the start until ``expect`` are seen."""
    kafka = make_consumer(settings, topic, group_id=None)
    await kafka.start()
    found: set[str] = set()
    try:
        async with asyncio.timeout(30):
            while len(found) < expect:
                for messages in (await kafka.getmany(timeout_ms=500)).values():
                    for msg in messages:
                        record = codec.decode(msg.value).record
                        if record["store_id"] == store:
                            found.add(str(record["event_id"]))
        await asyncio.sleep(1)  # nothing more (the big one) arrives
        for messages in (await kafka.getmany(timeout_ms=500)).values():
            for msg in messages:
                record = codec.decode(msg.value).record
                if record["store_id"] == store:
                    found.add(str(record["event_id"]))
    finally:
        await kafka.stop()
    return found


async def test_a_dead_letter_too_large_for_its_topic_goes_without_its_value_and_replays(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    group = f"bigdlq-{uuid.uuid4().hex[:8]}"
    dlq = topic_for(group).name
    partitions = kafka_topics.topic_partitions
    await _create_topic(kafka_topics, dlq, partitions, **{"max.message.bytes": "4000"})
    store = f"D{uuid.uuid4().hex[:8]}"
    receipt = f"POISON-{uuid.uuid4().hex}"
    poison = _sale(store, receipt, padding=8000)  # ~16 kB
    await publish(
        kafka_topics, codec, [_sale(store), _sale(store), poison, _sale(store), _sale(store)]
    )
    url = f"sqlite:///{tmp_path / 'bigdlq.db'}"
    consumer = Effects.in_group(group)(kafka_topics)
    async with running(consumer, kafka_topics, url):
        await wait_until(
            lambda: (
                _effects(url, store) == 4
                and _metric(
                    "tillstream_consumer_dlq_records_total", consumer=group, reason="invalid"
                )
                == 1
            ),
            timeout=60,
            what="the 4 good sales applied and the big poison dead-lettered",
        )
    refused = _metric(
        "tillstream_consumer_sends_refused_total",
        consumer=group,
        what="dead_letter",
        reason="too_large",
    )
    assert refused == 1
    bootstrap = kafka_topics.kafka_bootstrap_servers
    shown = cli(bootstrap, "dlq", "show", group, "--json")
    assert shown.returncode == 0, shown.stderr
    (letter,) = [json.loads(line) for line in shown.stdout.splitlines()]
    assert (letter["reason"], letter["bytes"], letter["value_omitted"]) == (
        "invalid",
        0,
        "too-large",
    )

    Database(url).execute("INSERT INTO fixes (receipt) VALUES (?)", (receipt,))
    replayed = cli(bootstrap, "dlq", "replay", group)  # reads the record from its source
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 dead letter(s)" in replayed.stdout
    async with running(consumer, kafka_topics, url):
        await wait_until(lambda: _effects(url, store) == 5, what="the fixed poison applied")


def test_the_read_api_token_is_checked_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from tillstream.core.settings import SettingsError, load_settings

    monkeypatch.setenv("TILLSTREAM_CONSUMER_API_TOKEN", "")  # compose's ${X:-}: unset
    assert load_settings().consumer_api_token is None
    monkeypatch.setenv("TILLSTREAM_CONSUMER_API_TOKEN", "short-secret")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "TILLSTREAM_CONSUMER_API_TOKEN: must be at least 16 characters" in str(refused.value)
    assert "short-secret" not in str(refused.value)
