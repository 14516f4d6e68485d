"""``tillstream simulate``: simulated tills for load tests, against edges or any cluster."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import click

from tillstream.cli.common import CARD_NUMBER_REFUSED, no_card_number, settings
from tillstream.cli.tills import Traffic, traffic_options
from tillstream.core.codec import AvroCodec
from tillstream.core.identifiers import text_problem
from tillstream.core.kafka import make_producer
from tillstream.core.registry import registry_from_settings
from tillstream.core.settings import Settings
from tillstream.simulate.driver import EdgeSink, KafkaSink, Simulator, Sink, Stats


@click.command()
@traffic_options(rate=100, duration_help="Seconds to run.", duration_required=True)
@click.option(
    "--edge", "edges", multiple=True, metavar="URL",
    help="Edge service of store N (repeat, in store order). Without it, events go straight "
    "to Kafka as the edges would publish them (TILLSTREAM_KAFKA_* settings).",
)  # fmt: skip
@click.option(
    "--poslog-dir", "drop_folders", multiple=True, type=click.Path(file_okay=False, path_type=Path),
    help="POSLog drop folder of store N (repeat); else POSLog tills post to /v1/poslog.",
)  # fmt: skip
@click.option(
    "--store-prefix",
    default="S",
    show_default=True,
    callback=no_card_number,
    help="Store ids: S001, S002...",
)
def simulate(
    traffic: Traffic, edges: tuple[str, ...], drop_folders: tuple[Path, ...], store_prefix: str
) -> None:
    """Simulated stores ringing up receipts (baskets, weighed goods, voids, returns, loyalty
    customers, payments, deliveries) at --rate events per second for --duration seconds.
    The last till of each store writes POSLog; a few receipts carry a card number in a text
    field, which the edges must refuse (they are not sent when publishing to Kafka)."""
    stores = traffic.stores
    if edges and len(edges) != stores:
        raise click.UsageError(f"give one --edge per store: {stores} stores, {len(edges)} edges")
    if drop_folders and len(drop_folders) != stores:
        raise click.UsageError(f"give one --poslog-dir per store ({stores})")
    cfg = settings()
    ids = traffic.store_ids(store_prefix)
    if any(text_problem(store) is not None for store in ids):  # the prefix and a number
        raise click.BadParameter(CARD_NUMBER_REFUSED, param_hint="'--store-prefix'")
    stats = asyncio.run(_simulate(cfg, ids, traffic, edges, drop_folders))
    for why, events in stats.failures.most_common():
        click.echo(f"not delivered: {events} events: {why}", err=True)
    click.echo(
        f"simulate: stores={stores} sent={stats.total('sent')} "
        f"accepted={stats.total('accepted')} refused={stats.total('rejected')} "
        f"failed={stats.total('failed')} poslog_files={stats.poslog_files}"
    )
    if stats.total("failed"):
        raise SystemExit(1)


async def _simulate(
    cfg: Settings,
    stores: list[str],
    traffic: Traffic,
    edges: tuple[str, ...],
    drop_folders: tuple[Path, ...],
) -> Stats:
    sink: Sink
    if edges:
        folders = dict(zip(stores, drop_folders, strict=False))  # none, or one per store
        sink = EdgeSink(dict(zip(stores, edges, strict=True)), folders)
    else:
        producer = make_producer(cfg)
        await producer.start()
        sink = KafkaSink(producer, AvroCodec(registry_from_settings(cfg)))
    # Without an edge nothing would refuse a bad receipt: send none.
    simulator = Simulator(
        stores,
        sink,
        rate=traffic.rate,
        tills=traffic.tills,
        seed=traffic.seed,
        bad_ratio=0.005 if edges else 0.0,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    run = asyncio.create_task(simulator.run(traffic.duration, stop))
    started = time.monotonic()
    told, shown = False, started
    try:
        while not run.done():
            await asyncio.wait([run], timeout=1)
            stats = simulator.stats
            retrying = (f"{store}: {why} (retrying)" for store, why in sink.problems.items())
            problem = stats.first_failure or next(retrying, None)
            if problem and not told:  # at once (while retrying), not only in the edge's log
                click.echo(f"first failure: {problem}", err=True)
                told = True
            if time.monotonic() - shown >= 5 or run.done():
                shown = time.monotonic()
                click.echo(
                    f"[{shown - started:5.0f}s] sent {stats.total('sent')} "
                    f"accepted {stats.total('accepted')} failed {stats.total('failed')}",
                    err=True,
                )
        return await run
    finally:
        if not edges:
            await producer.stop()


COMMANDS = [simulate]
