"""``tillstream consume``: run a head-office consumer service (built-in or a user's own)."""

from __future__ import annotations

import click

from tillstream.cli.common import run, settings
from tillstream.core.logs import configure_logging
from tillstream_consumers.runtime.db import DatabaseError, redact_url
from tillstream_consumers.runtime.loader import ConsumerNotFound, load_consumer
from tillstream_consumers.runtime.runner import ConsumerService, RunnerConfig
from tillstream_consumers.runtime.sender import Refused


@click.command()
@click.argument("consumer")
@click.option(
    "--db",
    "db_url",
    help="Database URL. [env: TILLSTREAM_DB_URL; default: sqlite:///tillstream.db, "
    "analytics: duckdb:///analytics.duckdb]",
)
@click.option(
    "--listen",
    help="HOST:PORT for /metrics, /healthz, /readyz. [env: TILLSTREAM_CONSUMER_LISTEN; "
    "default: 0.0.0.0:9400]",
)
@click.option(
    "--group",
    help="Run under this consumer group instead of the consumer's own (e.g. to rebuild a "
    "database beside the live one); also names the dead-letter topic. Its migrations stay "
    "recorded under the consumer's own name.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    help="Records per batch. [env: TILLSTREAM_CONSUMER_BATCH_SIZE; default: 500]",
)
def consume(
    consumer: str,
    db_url: str | None,
    listen: str | None,
    group: str | None,
    batch_size: int | None,
) -> None:
    """Run CONSUMER until SIGTERM or Ctrl-C: erp, crm, analytics, audit, an entry point of the
    group tillstream.consumers, or package.module:Class.

    Each consumer is its own consumer group; start more instances to scale it out (up to
    the partitions of its topics). SIGTERM finishes the batch in flight, commits, leaves
    the group and exits.
    """
    cfg = settings(db_url=db_url, consumer_listen=listen, consumer_batch_size=batch_size)
    configure_logging(cfg.log_level)
    try:
        consumer_class = load_consumer(consumer)
    except ConsumerNotFound as exc:
        raise click.UsageError(str(exc)) from None
    if group:
        consumer_class = consumer_class.in_group(group)
    if "db_url" not in cfg.model_fields_set and consumer_class.default_db_url:
        cfg = cfg.model_copy(update={"db_url": consumer_class.default_db_url})
    service = ConsumerService(consumer_class(cfg), cfg, RunnerConfig(db_url=cfg.db_url))
    # A service with pages names where people open them; any other, where Prometheus reads.
    served = "pages" if consumer_class.signs_in else "metrics"
    try:
        # Where it listens may depend on its database (API tokens there or not): in the try.
        where = service.url()
        click.echo(
            f"{consumer_class.name}: database {redact_url(cfg.db_url)}, {served} on {where}",
            err=True,
        )
        run(service.run(handle_signals=True, serve_http=True))
    except (DatabaseError, Refused) as exc:
        raise click.ClickException(str(exc)) from None


COMMANDS = [consume]
