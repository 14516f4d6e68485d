"""``tillstream dlq``: read dead letters, and send them back to their topics after a fix."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import click
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from tillstream.cli.common import run, settings
from tillstream.core.kafka import make_admin, make_consumer, make_producer
from tillstream.core.settings import Settings
from tillstream_consumers.runtime import deadletter
from tillstream_consumers.runtime.loader import builtin_groups, group_of

READ_TIMEOUT = 60
"""Seconds to read the dead-letter topics to the end offsets seen at the start."""


@click.group()
def dlq() -> None:
    """Dead-letter topics: records a consumer could never apply."""


@dataclass(frozen=True)
class Letter:
    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    key: bytes | None
    value: bytes
    why: deadletter.DeadLetter

    def as_json(self) -> dict[str, Any]:
        return {
            "dlq": f"{self.dlq_topic}/{self.dlq_partition}/{self.dlq_offset}",
            "consumer": self.why.consumer,
            "reason": self.why.reason,
            "rule": self.why.rule,
            "error": self.why.error,
            "source": {
                "topic": self.why.topic,
                "partition": self.why.partition,
                "offset": self.why.offset,
            },
            "time": self.why.at.isoformat(),
            "bytes": len(self.value),
            "value_omitted": self.why.value_omitted,
        }


@dlq.command("show")
@click.argument("consumers", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
@click.option("--max", "max_letters", type=click.IntRange(1), help="Show at most N.")
def show(consumers: tuple[str, ...], as_json: bool, max_letters: int | None) -> None:
    """List the dead letters of CONSUMERS (default: every consumer), oldest first.

    A consumer is named as for `consume` (erp, crm, analytics, audit, an entry point,
    package.module:Class) or by its consumer group (erp-inventory).
    """
    cfg = settings()
    letters = _kafka(cfg, _read(cfg, consumers, max_letters))
    for letter in letters:
        if as_json:
            click.echo(json.dumps(letter.as_json()))
        else:
            why = letter.why
            click.echo(
                f"{why.at:%Y-%m-%d %H:%M:%S} {why.consumer:<12} {why.reason:<13} "
                f"{why.topic}[{why.partition}]@{why.offset}  {why.error}"
            )
    if not as_json:
        click.echo(f"-- {len(letters)} dead letter(s)", err=True)


@dlq.command("replay")
@click.argument("consumer")
@click.option("--dry-run", is_flag=True, help="Show what would be sent, send nothing.")
def replay(consumer: str, dry_run: bool) -> None:
    """Send CONSUMER's dead letters not replayed yet back to their source topics.

    Run it after fixing the cause. Each letter is sent once (progress is kept by the
    consumer group tillstream.dlq-replay.GROUP, GROUP being CONSUMER's group, e.g.
    erp-inventory for erp); consumers apply each event id once, so replaying twice, or a
    letter that other consumers had applied, has no double effect.
    """
    cfg = settings()
    sent = _kafka(cfg, _replay(cfg, consumer, dry_run))
    click.echo(f"{'would replay' if dry_run else 'replayed'} {sent} dead letter(s) of {consumer}")


def _kafka(cfg: Settings, coro: Any) -> Any:
    try:
        return run(coro)
    except KafkaError as exc:
        raise click.ClickException(f"Kafka at {cfg.kafka_bootstrap_servers}: {exc}") from None
    except TimeoutError:
        raise click.ClickException(
            f"Kafka at {cfg.kafka_bootstrap_servers} did not deliver the dead-letter topics to "
            f"their end within {READ_TIMEOUT} s (a partition without a leader?); nothing was "
            "replayed. Try again."
        ) from None


async def _dlq_partitions(cfg: Settings, consumers: tuple[str, ...]) -> list[TopicPartition]:
    """Partitions of the dead-letter topics of ``consumers`` (default: all of them)."""
    admin = make_admin(cfg)
    try:  # a failed start is stopped too, not left unclosed
        await admin.start()
        existing = {t for t in await admin.list_topics() if t.startswith(deadletter.PREFIX)}
        wanted = [deadletter.topic_for(group_of(c)).name for c in consumers] or sorted(existing)
        missing = [t for t in wanted if t not in existing]
        if missing:
            raise click.ClickException(_no_topic(missing, existing))
        described = await admin.describe_topics(wanted) if wanted else []
    finally:
        await admin.close()
    return [
        TopicPartition(topic["topic"], p["partition"])
        for topic in described
        for p in topic["partitions"]
    ]


def _no_topic(missing: list[str], existing: set[str]) -> str:
    """Which dead-letter topics are missing, and the names that do have one."""
    groups = {g: short for short, g in builtin_groups().items()}
    there = [t.removeprefix(deadletter.PREFIX) for t in sorted(existing)]
    known = ", ".join(f"{groups[g]} ({g})" if g in groups else g for g in there)
    return f"no dead-letter topic {', '.join(missing)} (a consumer's appears once it has run); " + (
        f"dead letters exist for: {known}" if known else "no consumer has dead letters yet"
    )


async def _read_to_end(kafka: AIOKafkaConsumer) -> list[Letter]:
    """Every record from the current positions to the end offsets seen at the start."""
    partitions = kafka.assignment()
    end = await kafka.end_offsets(list(partitions))
    letters: list[Letter] = []
    async with asyncio.timeout(READ_TIMEOUT):
        while [tp for tp in partitions if await kafka.position(tp) < end[tp]]:
            for messages in (await kafka.getmany(timeout_ms=500)).values():
                for msg in messages:
                    if msg.offset >= end[TopicPartition(msg.topic, msg.partition)]:
                        continue
                    try:
                        why = deadletter.DeadLetter.from_headers(msg.headers)
                    except ValueError:
                        continue
                    letters.append(
                        Letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, why)
                    )
    return letters


async def _assigned(
    cfg: Settings, partitions: list[TopicPartition], group_id: str | None
) -> AIOKafkaConsumer:
    """A started consumer assigned ``partitions``, at the group's progress or the start."""
    kafka = make_consumer(cfg, group_id=group_id)
    await kafka.start()
    kafka.assign(partitions)
    for tp in partitions:
        committed = await kafka.committed(tp) if group_id else None
        if committed is None:
            await kafka.seek_to_beginning(tp)
        else:
            kafka.seek(tp, committed)
    return kafka


async def _read(cfg: Settings, consumers: tuple[str, ...], limit: int | None) -> list[Letter]:
    partitions = await _dlq_partitions(cfg, consumers)
    if not partitions:
        return []
    kafka = await _assigned(cfg, partitions, None)
    try:
        letters = await _read_to_end(kafka)
    finally:
        await _stop(kafka)
    letters.sort(key=lambda letter: letter.why.at)
    return letters[:limit] if limit else letters


async def _replay(cfg: Settings, consumer: str, dry_run: bool) -> int:
    partitions = await _dlq_partitions(cfg, (consumer,))
    # Progress by group: `replay erp` and `replay erp-inventory` resume from one another.
    kafka = await _assigned(cfg, partitions, f"tillstream.dlq-replay.{group_of(consumer)}")
    producer = make_producer(cfg)
    try:  # a failed start is stopped too, not left unclosed
        await producer.start()
        letters = await _read_to_end(kafka)
        letters.sort(key=lambda letter: (letter.dlq_partition, letter.dlq_offset))
        for letter in letters:
            why = letter.why
            click.echo(f"{why.topic}[{why.partition}]@{why.offset} ({why.reason}): {why.error}")
            if why.value_omitted == deadletter.CARD_NUMBER_OMITTED:
                # Sent again it would be refused again: it is fixed at its producer, not here.
                click.echo("  not replayed: it holds a card number (fix it at its producer)")
                continue
            if dry_run:
                continue
            origin = f"{letter.dlq_topic}/{letter.dlq_partition}/{letter.dlq_offset}"
            # Too large for the dead-letter topic: the record is read back from its source.
            value = await _source_value(cfg, why) if why.value_omitted else letter.value
            await producer.send_and_wait(
                why.topic,
                value,
                key=letter.key,
                headers=[(deadletter.H_REPLAYED, origin.encode())],
            )
            # Progress after each letter: an interrupted replay resumes where it stopped.
            await kafka.commit(
                {TopicPartition(letter.dlq_topic, letter.dlq_partition): letter.dlq_offset + 1}
            )
        return len(letters)
    finally:
        await producer.stop()
        await _stop(kafka)


async def _source_value(cfg: Settings, why: deadletter.DeadLetter) -> bytes:
    """The value of the record a dead letter names, read from its source topic."""
    source = TopicPartition(why.topic, why.partition)
    kafka = make_consumer(cfg, group_id=None)
    try:  # a failed start is stopped too, not left unclosed
        await kafka.start()
        kafka.assign([source])
        kafka.seek(source, why.offset)
        async with asyncio.timeout(30):
            while True:
                for msg in (await kafka.getmany(source, timeout_ms=500)).get(source, []):
                    if msg.offset == why.offset:
                        return bytes(msg.value)
                    if msg.offset > why.offset:
                        break
                else:
                    continue
                break
    except TimeoutError:
        pass
    finally:
        await _stop(kafka)
    raise click.ClickException(
        f"{why.topic}[{why.partition}]@{why.offset} is no longer in its topic (retention): "
        "its dead letter had no value (too large), so it cannot be replayed"
    )


async def _stop(kafka: AIOKafkaConsumer) -> None:
    # aiokafka 0.14 without a group re-raises the cancellation of its own internal task
    # on stop; only a cancellation of ours is worth passing on.
    try:
        await kafka.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


COMMANDS = [dlq]
