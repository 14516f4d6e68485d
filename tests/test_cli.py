"""The operator commands, run as operators run them: as processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import SALES, STOCK_MOVEMENTS, store_key
from tillstream.dev.ports import free_port
from tillstream.dev.processes import clean_environment, run_tillstream
from tillstream.dev.samples import sample_sale, sample_stock_movement

CLI = [sys.executable, "-m", "tillstream"]


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    return clean_environment(
        TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers, **extra
    )


def cli(settings: Settings, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """``tillstream ARGS`` against ``settings``' brokers (plus ``extra`` settings)."""
    env = {"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, **extra}
    return run_tillstream(*args, env=env)


def test_topics_create_is_idempotent(settings: Settings) -> None:
    first = cli(settings, "topics", "create", TILLSTREAM_TOPIC_PARTITIONS="3")
    assert first.returncode == 0, first.stderr
    second = cli(settings, "topics", "create", TILLSTREAM_TOPIC_PARTITIONS="3")
    assert second.returncode == 0, second.stderr
    for topic in (SALES.name, STOCK_MOVEMENTS.name):
        assert f"exists   {topic}" in second.stdout


@pytest.mark.usefixtures("kafka_topics")
async def test_tail_prints_decoded_events_as_json(settings: Settings, codec: AvroCodec) -> None:
    store = f"S-TAIL-{time.time_ns() % 100000}"
    movements = [sample_stock_movement(store) for _ in range(3)]
    producer = make_producer(settings)
    await producer.start()
    try:
        for m in movements:
            await producer.send_and_wait(
                STOCK_MOVEMENTS.name, codec.encode("stock_movement", m), key=store_key(store)
            )
        await producer.send_and_wait(STOCK_MOVEMENTS.name, b"not avro", key=store_key(store))
        await producer.send_and_wait(
            SALES.name, codec.encode("sale", sample_sale(store)), key=store_key(store)
        )
    finally:
        await producer.stop()

    result = cli(
        settings, "tail", STOCK_MOVEMENTS.name, "--from-beginning", "--json", "--idle-timeout", "3"
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    mine = [ln for ln in lines if ln["key"] == store]
    assert [ln["value"]["event_id"] for ln in mine if "value" in ln] == [
        m["event_id"] for m in movements
    ]
    assert mine[0]["event"] == "stock_movement"
    assert mine[0]["value"]["quantity"] == "24.000"  # decimals stay exact, as strings
    assert "error" in mine[-1] and "magic byte" in mine[-1]["error"]

    limited = cli(settings, "tail", SALES.name, "--from-beginning", "--max", "1")
    assert limited.returncode == 0, limited.stderr
    assert len(limited.stdout.splitlines()) == 1
    assert " sale {" in limited.stdout


def test_tail_of_unknown_topic_is_a_clear_error(settings: Settings) -> None:
    result = cli(settings, "tail", "no.such.topic", "--max", "1")
    assert result.returncode == 1
    assert "topic 'no.such.topic' does not exist" in result.stderr


def test_bad_setting_is_reported_by_name(settings: Settings) -> None:
    result = cli(settings, "topics", "create", TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS="nohost")
    assert result.returncode == 1
    assert "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_kafka_without_java_says_how_to_get_it(tmp_path: Path) -> None:
    env = {
        "PATH": str(tmp_path),
        "HOME": str(tmp_path),
        "TILLSTREAM_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [*CLI, "dev", "kafka"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "Java 17 or newer is needed" in result.stderr
    assert "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS" in result.stderr


def test_dev_kafka_starts_and_stops_cleanly(kafka_libs: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TILLSTREAM_CACHE_DIR": str(kafka_libs.parent.parent)}
    proc = subprocess.Popen(
        [*CLI, "dev", "kafka", "--port", str(port), "--data", str(tmp_path / "data")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 90
        output = ""
        while "Kafka ready" not in output and time.monotonic() < deadline:
            output += proc.stdout.readline()
        assert f"Bootstrap servers: 127.0.0.1:{port}" in output
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)  # a controlled shutdown; slow on a busy machine
    assert proc.returncode == 0, output + rest
    assert "Kafka stopped." in rest
    assert (tmp_path / "data" / "logs" / "meta.properties").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["tail", "tillstream.sales", "--max", "1"],
        ["topics", "create"],
        ["dlq", "show"],
        ["dlq", "replay", "erp"],
        ["crm", "erase", "C-UNREACHABLE"],
        ["acls", "apply", "--store", "S1"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_an_unreachable_broker_names_the_variable_to_set(command: list[str]) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    result = run_tillstream(*command, env={"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": nowhere})
    assert result.returncode == 1
    assert f"no Kafka broker answers at {nowhere}: connection refused" in result.stderr
    assert "Set TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS to the brokers' host:port" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Unclosed" not in result.stderr
    # Only the clean error: none of aiokafka's own lines of the failed attempt before it.
    assert result.stderr.startswith("Error: "), result.stderr
    assert "Unable connect" not in result.stderr


def test_the_suite_reads_the_commands_variable_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import external_kafka

    monkeypatch.delenv("TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert external_kafka() is None
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "old:9092")
    assert external_kafka() == ("KAFKA_BOOTSTRAP_SERVERS", "old:9092")
    monkeypatch.setenv("TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS", "k1:9092")
    assert external_kafka() == ("TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS", "k1:9092")


async def _topic_with_sales(settings: Settings, codec: AvroCodec, n: int) -> str:
    """A fresh one-partition topic holding ``n`` sales."""
    from tillstream.core.kafka import create_topics
    from tillstream.core.topics import TopicSpec

    name = f"test.tail.{time.time_ns()}"
    await create_topics(
        settings.model_copy(update={"topic_partitions": 1}), (TopicSpec(name, None, {}),)
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        for _ in range(n):
            await producer.send_and_wait(name, codec.encode("sale", sample_sale("S-T")), key=b"S-T")
    finally:
        await producer.stop()
    return name


async def test_tail_max_with_fewer_events_says_it_waits(
    settings: Settings, codec: AvroCodec
) -> None:
    topic = await _topic_with_sales(settings, codec, 2)
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "tail",
        topic,
        "--from-beginning",
        "--max",
        "5",
        env=cli_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Ctrl-C as at a terminal: a background job's shell (nohup, `make test &`) hands its
        # children SIGINT ignored, and Python then installs no handler for it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None and proc.stdout is not None
    notice = b""
    try:
        async with asyncio.timeout(60):  # the old tail waited here forever, silently
            while b"waiting for more" not in notice:
                notice = await proc.stderr.readline()
                assert notice, "tail ended before saying it waits"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert f"-- 2 of 5 event(s) so far, the end of {topic}" in notice.decode()
    assert "--idle-timeout" in notice.decode()
    assert len(out.splitlines()) == 2


async def test_tail_max_with_idle_timeout_ends_with_what_it_had(
    settings: Settings, codec: AvroCodec
) -> None:
    topic = await _topic_with_sales(settings, codec, 2)
    result = cli(settings, "tail", topic, "--from-beginning", "--max", "5", "--idle-timeout", "2")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert "ends after 2 s without one" in result.stderr
    assert "-- 2 event(s)" in result.stderr


def test_crm_erase_on_a_cluster_without_the_topic_says_so_at_once(
    kafka_libs: Path, tmp_path: Path
) -> None:
    """Not a silent 30 s wait ending in UnknownTopicOrPartitionError (a fresh broker: no topics)."""
    from tillstream.dev.broker import LocalKafka

    broker = LocalKafka(data_dir=tmp_path / "kafka", libs=kafka_libs, port=free_port())
    broker.start()
    try:
        started = time.monotonic()
        result = cli(
            Settings(kafka_bootstrap_servers=broker.bootstrap), "crm", "erase", "C-NO-TOPIC"
        )
        took = time.monotonic() - started
    finally:
        broker.stop()
    assert result.returncode == 1
    assert "topic tillstream.customer-requests does not exist" in result.stderr
    assert "tillstream topics create" in result.stderr
    assert took < 20  # the producer's own wait is 30 s
