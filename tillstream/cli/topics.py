"""``tillstream topics`` and ``tillstream tail``: the Kafka side, for people and scripts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click
from aiokafka.errors import KafkaError

from tillstream.cli.common import run, settings
from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.kafka import create_topics, make_consumer
from tillstream.core.records import to_json
from tillstream.core.registry import registry_from_settings
from tillstream.core.settings import Settings
from tillstream.core.tasks import checkpoint
from tillstream.core.topics import ALL_TOPICS


@click.group()
def topics() -> None:
    """Manage tillstream's Kafka topics."""


@topics.command("create")
@click.option("--partitions", type=click.IntRange(1), help="[default: TILLSTREAM_TOPIC_PARTITIONS]")
@click.option(
    "--replication-factor",
    type=click.IntRange(1),
    help="[default: TILLSTREAM_TOPIC_REPLICATION_FACTOR]",
)
def create(partitions: int | None, replication_factor: int | None) -> None:
    """Create the project's topics (existing topics are left as they are)."""
    cfg = settings(topic_partitions=partitions, topic_replication_factor=replication_factor)
    try:
        outcome = run(create_topics(cfg))
    except KafkaError as exc:
        raise click.ClickException(
            f"cannot create topics on {cfg.kafka_bootstrap_servers}: {exc}"
        ) from None
    for spec in ALL_TOPICS:
        click.echo(f"{outcome.get(spec.name, '?'):8} {spec.name}")


@click.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest retained event.")
@click.option("--max", "max_events", type=click.IntRange(1), help="Stop after N events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0, min_open=True),
    help="Stop when no event arrives for this many seconds.",
)
def tail(
    topic: str,
    from_beginning: bool,
    max_events: int | None,
    as_json: bool,
    idle_timeout: float | None,
) -> None:
    """Print the decoded events of TOPIC as they arrive (Ctrl-C stops).

    Undecodable messages are reported on stderr and skipped. Once every event there is has
    been read, tail says so on stderr and keeps waiting for new ones: --max N ends after N
    events, --idle-timeout S after S seconds without one.
    """
    cfg = settings()
    try:
        count = run(_tail(cfg, topic, from_beginning, max_events, as_json, idle_timeout))
    except KafkaError as exc:
        raise click.ClickException(
            f"cannot read {topic} from {cfg.kafka_bootstrap_servers}: {exc}"
        ) from None
    if not as_json:
        click.echo(f"-- {count} event(s)", err=True)


async def _tail(
    cfg: Settings,
    topic: str,
    from_beginning: bool,
    max_events: int | None,
    as_json: bool,
    idle_timeout: float | None,
) -> int:
    codec = AvroCodec(registry_from_settings(cfg))
    # No group: nothing is committed, so the reset policy alone decides where reading starts.
    reset = "earliest" if from_beginning else "latest"
    consumer = make_consumer(cfg, group_id=None, auto_offset_reset=reset)
    try:
        await consumer.start()  # inside: a failed start is stopped too, not left unclosed
        if topic not in await consumer.topics():
            raise click.ClickException(f"topic {topic!r} does not exist")
        consumer.subscribe([topic])
        count = 0
        last_event = time.monotonic()
        told = False
        while max_events is None or count < max_events:
            checkpoint()  # Ctrl-C cancels; an await inside aiokafka may have swallowed it
            batches = await consumer.getmany(timeout_ms=500)
            if not batches and not told and await _caught_up(consumer):
                click.echo(_waiting(topic, count, max_events, idle_timeout), err=True)
                told = True
            for messages in batches.values():
                for msg in messages:
                    line = _render(codec, msg, as_json)
                    if line is not None:
                        click.echo(line)
                    count += 1
                    last_event = time.monotonic()
                    if max_events is not None and count >= max_events:
                        return count
            if idle_timeout is not None and time.monotonic() - last_event > idle_timeout:
                return count
            await asyncio.sleep(0)
        return count
    finally:
        await consumer.stop()


async def _caught_up(consumer: Any) -> bool:
    """Whether every assigned partition has been read to its end."""
    partitions = list(consumer.assignment())
    if not partitions:
        return False  # not joined yet
    end = await consumer.end_offsets(partitions)
    return all([await consumer.position(tp) >= end[tp] for tp in partitions])


def _waiting(topic: str, count: int, max_events: int | None, idle_timeout: float | None) -> str:
    """What tail waits for, once it has read all there is (else it would seem to hang)."""
    so_far = f"{count} of {max_events}" if max_events is not None else str(count)
    ends = (
        f"ends after {idle_timeout:g} s without one"
        if idle_timeout is not None
        else "Ctrl-C stops; --idle-timeout S ends after S s without one"
    )
    return f"-- {so_far} event(s) so far, the end of {topic}; waiting for more ({ends})"


def _render(codec: AvroCodec, msg: Any, as_json: bool) -> str | None:
    key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
    where = {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset, "key": key}
    if msg.value is None:  # a tombstone: the key deleted (compacted topics: items, prices)
        if as_json:
            return to_json({**where, "timestamp_ms": msg.timestamp, "tombstone": True})
        return f"{msg.topic}[{msg.partition}]@{msg.offset} key={key} tombstone (deleted)"
    try:
        decoded = codec.decode(msg.value)
    except CodecError as exc:
        click.echo(f"{msg.topic}[{msg.partition}]@{msg.offset}: undecodable: {exc}", err=True)
        return to_json({**where, "error": str(exc)}) if as_json else None
    if as_json:
        return to_json(
            {
                **where,
                "timestamp_ms": msg.timestamp,
                "event": decoded.event,
                "schema_id": decoded.schema_id,
                "value": decoded.record,
            }
        )
    return f"{msg.topic}[{msg.partition}]@{msg.offset} key={key} {decoded.event} " + to_json(
        decoded.record
    )


COMMANDS = [topics, tail]
