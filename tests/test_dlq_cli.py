"""``tillstream dlq`` takes the names operators type: erp, crm, analytics, or the group."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime

import pytest

from tillstream.core.kafka import create_topics, make_consumer, make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import TopicSpec
from tillstream.dev.processes import run_tillstream
from tillstream_consumers.erp import ErpInventory
from tillstream_consumers.runtime import deadletter
from tillstream_consumers.runtime.loader import group_of, load_consumer


def _letters() -> str:
    """A unique marker without digits (dead-letter errors redact runs of digits)."""
    return uuid.uuid4().hex[:10].translate(str.maketrans("0123456789", "ghijklmnop"))


def _cli(settings: Settings, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, **extra}
    return run_tillstream(*args, env=env, timeout=120)


async def _dead_letter(settings: Settings, group: str, source: str, marker: str) -> None:
    """A dead letter as the runtime writes it, from the source topic ``source``."""
    dlq = deadletter.topic_for(group)
    await create_topics(settings, (dlq, TopicSpec(source, None, {})))
    why = deadletter.DeadLetter(
        group, "invalid", f"PermanentError: case {marker}", source, 0, 7, datetime.now(UTC)
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            dlq.name, marker.encode(), key=b"k", partition=0, headers=why.headers()
        )
    finally:
        await producer.stop()


def test_operator_names_resolve_to_consumer_groups() -> None:
    assert group_of("erp") == group_of("erp-inventory") == ErpInventory.name == "erp-inventory"
    assert group_of("crm") == "crm-profiles"
    assert group_of("analytics") == "analytics"
    assert group_of("rebuild-2026") == "rebuild-2026"  # a group given to consume --group
    assert load_consumer("erp-inventory") is ErpInventory


async def test_dlq_show_and_replay_accept_erp(kafka_topics: Settings) -> None:
    marker = f"ERP-{_letters()}"
    source = f"test.dlq-source.{marker}"
    await _dead_letter(kafka_topics, ErpInventory.name, source, marker)

    shown = _cli(kafka_topics, "dlq", "show", "erp", "--json")
    assert shown.returncode == 0, shown.stderr
    assert f"PermanentError: case {marker}" in shown.stdout
    assert '"consumer": "erp-inventory"' in shown.stdout
    by_group = _cli(kafka_topics, "dlq", "show", "erp-inventory", "--json")
    assert by_group.stdout == shown.stdout

    # A dry run: the session's other ERP dead letters stay where they are.
    replay = _cli(kafka_topics, "dlq", "replay", "erp", "--dry-run")
    assert replay.returncode == 0, replay.stderr
    assert f"{source}[0]@7 (invalid): PermanentError: case {marker}" in replay.stdout
    assert "would replay" in replay.stdout and "of erp" in replay.stdout


async def test_replay_progress_is_kept_per_group_whatever_the_name(kafka_topics: Settings) -> None:
    group = f"effects-{uuid.uuid4().hex[:8]}"
    marker = f"FX-{_letters()}"
    source = f"test.dlq-source.{marker}"
    await _dead_letter(kafka_topics, group, source, marker)
    # The same consumer by its class (its group comes from TILLSTREAM_TEST_GROUP) ...
    effects = "tests.runtime_consumers:Effects"
    by_class = _cli(kafka_topics, "dlq", "replay", effects, TILLSTREAM_TEST_GROUP=group)
    assert by_class.returncode == 0, by_class.stderr
    assert "replayed 1 dead letter(s)" in by_class.stdout
    # ... and then by its group: nothing left to send.
    by_group = _cli(kafka_topics, "dlq", "replay", group)
    assert by_group.returncode == 0, by_group.stderr
    assert "replayed 0 dead letter(s)" in by_group.stdout

    consumer = make_consumer(kafka_topics, source, group_id=None)
    await consumer.start()
    try:
        records = (await consumer.getmany(timeout_ms=10_000)).values()
        values = [m.value for batch in records for m in batch]
    finally:
        await consumer.stop()
    assert values == [marker.encode()]  # sent back once


def test_dlq_of_a_consumer_without_dead_letters_names_those_with(kafka_topics: Settings) -> None:
    result = _cli(kafka_topics, "dlq", "show", f"nobody-{uuid.uuid4().hex[:6]}")
    assert result.returncode == 1
    assert "no dead-letter topic tillstream.dlq.nobody-" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["erp", "erp-inventory"])
def test_acls_take_either_name_of_a_consumer(name: str) -> None:
    from click.testing import CliRunner

    from tillstream.cli import main

    result = CliRunner().invoke(main, ["acls", "show", "--consumer", name])
    assert result.exit_code == 0, result.output
    assert "User:erp-inventory" in result.output
