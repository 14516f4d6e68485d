"""``tillstream dev``: local infrastructure for development."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from tillstream.cli.common import settings
from tillstream.dev.broker import (
    KAFKA_VERSION,
    DataDirInUse,
    DevKafkaError,
    LocalKafka,
    resolve_jars,
)


@click.group()
def dev() -> None:
    """Local infrastructure for development and tests."""


@dev.command("kafka")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=9092,
    show_default=True,
    help="Broker port on 127.0.0.1.",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory (kept between runs). [default: <cache>/dev-kafka]",
)
def kafka(port: int, data_dir: Path | None) -> None:
    """Run a single-node Apache Kafka broker (KRaft) on loopback until Ctrl-C.

    The broker jars are fetched from Maven Central with Maven on the first run and cached
    under TILLSTREAM_CACHE_DIR.
    """
    cfg = settings()
    data_dir = data_dir or cfg.cache_dir / "dev-kafka"
    # Before the broker starts: a SIGTERM that arrives at any moment from here on still stops
    # the broker (a default SIGTERM would kill only us and leave Java running).
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        libs = resolve_jars(cfg.cache_dir, progress=click.echo)
        broker = LocalKafka(data_dir=data_dir, libs=libs, port=port)
        broker.preflight()  # a refusal first, not after "Starting"
        click.echo(f"Starting Kafka {KAFKA_VERSION} (KRaft) in {data_dir} ...")
        broker.start()
    except DataDirInUse as exc:
        raise click.ClickException(_in_use(exc)) from None
    except DevKafkaError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Kafka ready. Bootstrap servers: {broker.bootstrap}")
    click.echo(f"  export TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}")
    click.echo(f"  broker log: {broker.log_path}    (Ctrl-C stops the broker)")
    try:
        while not stop.is_set() and broker.running():
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        click.echo("Stopping Kafka ...")
        broker.stop()
    if (
        not stop.is_set()
        and broker.process is not None
        and broker.process.returncode not in (0, None, -15, 143)
    ):
        raise click.ClickException(f"Kafka exited unexpectedly; see {broker.log_path}")
    click.echo("Kafka stopped.")


def _in_use(exc: DataDirInUse) -> str:
    """The refusal, with the two ways on: use that broker, or start another elsewhere."""
    use = (
        f"export TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{exc.port}"
        if exc.port
        else "point TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS at its port"
    )
    return (
        f"{exc}; its files were left alone.\n"
        f"  To use it:               {use}\n"
        "  To start a second broker: tillstream dev kafka --data OTHER_DIR --port OTHER_PORT"
    )


COMMANDS = [dev]
