"""``tillstream demo``: the live local demo (the README's first command)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import click

from tillstream.cli.common import run, settings
from tillstream.codec import AvroCodec
from tillstream.devkafka import DevKafkaError, LocalKafka, free_port, resolve_jars
from tillstream.kafka import create_topics, make_consumer, make_producer
from tillstream.records import to_json
from tillstream.registry import registry_from_settings
from tillstream.samples import sample_payment, sample_sale, sample_stock_movement
from tillstream.settings import Settings
from tillstream.topics import EVENT_TOPICS, store_key


@click.command()
@click.option("--stores", type=click.IntRange(1, 50), default=3, show_default=True)
@click.option("--bootstrap-servers", help="Use this cluster instead of starting a local broker.")
def demo(stores: int, bootstrap_servers: str | None) -> None:
    """Start a local Kafka broker, publish sample events of every type and read them back."""
    cfg = settings()
    broker = None
    if bootstrap_servers is None:
        try:
            libs = resolve_jars(cfg.cache_dir, progress=click.echo)
            data = Path(tempfile.mkdtemp(prefix="tillstream-demo-"))
            broker = LocalKafka(data_dir=data, libs=libs, port=free_port())
            click.echo("Starting a local Kafka broker (KRaft) ...")
            broker.start()
        except DevKafkaError as exc:
            raise click.ClickException(str(exc)) from None
        bootstrap_servers = broker.bootstrap
        click.echo(f"Kafka ready at {bootstrap_servers} (log: {broker.log_path})")
    cfg = settings(kafka_bootstrap_servers=bootstrap_servers, topic_partitions=3)
    try:
        run(_demo(cfg, stores))
    finally:
        if broker is not None:
            click.echo("Stopping Kafka ...")
            broker.stop()


async def _demo(cfg: Settings, stores: int) -> None:
    for topic, outcome in (await create_topics(cfg)).items():
        click.echo(f"  topic {topic}: {outcome}")
    codec = AvroCodec(registry_from_settings(cfg))
    sent: list[tuple[str, dict[str, Any]]] = []
    for n in range(1, stores + 1):
        sale = sample_sale(f"S{n:03d}")
        sent += [
            ("sale", sale),
            ("payment", sample_payment(sale)),
            ("stock_movement", sample_stock_movement(f"S{n:03d}")),
        ]
    producer = make_producer(cfg)
    await producer.start()
    try:
        for event, record in sent:
            await producer.send(
                EVENT_TOPICS[event].name,
                codec.encode(event, record),
                key=store_key(record["store_id"]),
            )
        await producer.flush()
    finally:
        await producer.stop()
    click.echo(f"Published {len(sent)} events ({stores} stores x sale, payment, stock movement).")

    consumer = make_consumer(
        cfg, *(t.name for t in EVENT_TOPICS.values()), group_id="tillstream-demo"
    )
    await consumer.start()
    received = 0
    try:
        async with asyncio.timeout(60):
            while received < len(sent):
                for messages in (await consumer.getmany(timeout_ms=1000)).values():
                    for msg in messages:
                        decoded = codec.decode(msg.value)
                        received += 1
                        click.echo(
                            f"  <- {msg.topic}[{msg.partition}] {decoded.event}: "
                            f"{to_json(decoded.record)[:160]}..."
                        )
    finally:
        await consumer.stop()
    click.echo(f"Read back and decoded {received}/{len(sent)} events. Demo done.")


COMMANDS = [demo]
