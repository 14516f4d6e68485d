"""``tillstream demo``: the live local demo (the README's first command)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live

from tillstream.cli.common import settings
from tillstream.cli.tills import Traffic, traffic_options
from tillstream.demo import price_change, summary
from tillstream.demo.price_change import PriceChange
from tillstream.demo.stack import DemoStack
from tillstream.demo.view import Snapshot, audit_days, plain_line, render, scrape, store_day_line
from tillstream.dev.broker import DevKafkaError
from tillstream.dev.processes import ServiceError
from tillstream.simulate.driver import EdgeSink, Simulator, Stats

CATCH_UP_SECONDS = 60
PRICE_CHANGE_AFTER = 5.0
"""Seconds after the tills start that head office changes a price (a quarter of a shorter
run)."""


@click.command()
# An edge process per store: a laptop runs a few dozen at most.
@traffic_options(rate=60, duration_help="Seconds to run (default: until Ctrl-C).", max_stores=20)
@click.option("--bootstrap-servers", help="Use this cluster instead of starting a local broker.")
def demo(traffic: Traffic, bootstrap_servers: str | None) -> None:
    """Run the whole pipeline on this machine: a Kafka broker, an edge service per store, the
    ERP, CRM, analytics and sales-audit consumers, and simulated tills posting to the edges'
    HTTP API and dropping POSLog files; each store opens and closes its day. Shows live
    rates, lag, dead letters, low stock, sales and the audit's open flags; ends with a
    summary (how each store-day closed) after --duration seconds or Ctrl-C."""
    cfg = settings()
    console = Console(stderr=False)
    workdir = Path(tempfile.mkdtemp(prefix="tillstream-demo-"))
    stack = DemoStack(workdir, traffic.store_ids(), bootstrap_servers)
    try:
        with console.status("starting ...") as status:

            def say(message: str) -> None:
                if console.is_terminal:
                    status.update(message)
                else:
                    click.echo(message)

            stack.start(cfg, say)
        click.echo(f"Everything is up; logs and databases in {workdir}")
        for service in stack.services:
            click.echo(f"  {service.name:<12} {service.url}/metrics")
        simulator = Simulator(
            stack.stores,
            EdgeSink(
                {s: e.url for s, e in stack.edges.items()},
                {s: stack.drop_folder(s) for s in stack.stores},
            ),
            rate=traffic.rate,
            tills=traffic.tills,
            seed=traffic.seed,
        )
        change = price_change.planned()
        last = asyncio.run(_show(stack, simulator, traffic.duration, console, change, workdir))
        _summary(stack, simulator.stats, last, workdir, change)
    except (DevKafkaError, ServiceError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        stack.stop(lambda message: click.echo(message, err=True))


async def _show(
    stack: DemoStack,
    simulator: Simulator,
    duration: float | None,
    console: Console,
    change: PriceChange,
    workdir: Path,
) -> Snapshot:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    running = asyncio.create_task(simulator.run(duration, stop))
    delay = min(PRICE_CHANGE_AFTER, duration / 4) if duration else PRICE_CHANGE_AFTER
    repricing = asyncio.create_task(
        price_change.run(change, stack, workdir, delay=delay, started=started)
    )
    before: Snapshot | None = None
    interval = 1.0 if console.is_terminal else 5.0
    view: contextlib.AbstractContextManager[Live | None] = (
        Live(console=console, auto_refresh=False)
        if console.is_terminal
        else contextlib.nullcontext()
    )
    with view as live:
        while not running.done():
            now = await asyncio.to_thread(scrape, stack)
            elapsed = time.monotonic() - started
            if live is not None:
                live.update(render(before, now, simulator.stats, elapsed), refresh=True)
            else:
                click.echo(plain_line(before, now, elapsed))
            before = now
            await asyncio.wait([running], timeout=interval)
        await running
        click.echo("tills closed; letting the consumers catch up ...")
        last = await _catch_up(stack, live, simulator.stats, started)
        # Bounded: the watch ends by itself (price_change.WAIT_SECONDS); Ctrl-C ends it now.
        if not stop.is_set():
            await asyncio.wait([repricing], timeout=price_change.WAIT_SECONDS)
        repricing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await repricing
        return last


async def _catch_up(stack: DemoStack, live: Live | None, stats: Stats, started: float) -> Snapshot:
    """Wait until every consumer has applied all it will (lag 0, counts still)."""
    deadline = time.monotonic() + CATCH_UP_SECONDS
    before = await asyncio.to_thread(scrape, stack)
    while time.monotonic() < deadline:
        await asyncio.sleep(2)
        now = await asyncio.to_thread(scrape, stack)
        if live is not None:
            live.update(render(before, now, stats, time.monotonic() - started), refresh=True)
        if (
            now.applied == before.applied
            and not any(now.lag.values())
            and not any(now.outbox.values())
        ):
            return now
        before = now
    return before


def _summary(
    stack: DemoStack, stats: Stats, last: Snapshot, workdir: Path, change: PriceChange
) -> None:
    click.echo("")
    click.echo("Summary")
    click.echo(f"  {summary.deliveries_line(stats)}")
    for store in stack.stores:
        click.echo(
            f"  {store}: {last.accepted.get(store, 0):,.0f} events accepted, "
            f"{last.transactions.get(store, 0):,.0f} receipts today, "
            f"sales {last.sales.get(store, '-')}"
        )
    for name in last.applied:
        click.echo(
            f"  {name:<10} applied {last.applied[name]:,.0f} records, "
            f"lag {last.lag.get(name, 0):,.0f}, dead letters {last.dlq.get(name, 0):,.0f}"
        )
    for line in summary.stock_lines(summary.erp_stock(stack), last):
        click.echo(f"  {line}")
    click.echo(f"  {summary.flags_line(last)}")
    _audit_summary(stack, stats)
    click.echo(f"  {change.summary(stack.stores)}")
    click.echo(f"  try: tillstream stock S001 --db sqlite:///{workdir}/erp.db")
    click.echo(f"       tillstream report --store S001 --db duckdb:///{workdir}/analytics.duckdb")
    click.echo(f"       tillstream audit --db sqlite:///{workdir}/audit.db")


def _audit_summary(stack: DemoStack, stats: Stats) -> None:
    """How each store-day closed, read through the audit service's API, and which of its
    flags the simulator planted."""
    days = audit_days(stack)
    for store in stack.stores:
        found = days.get(store)
        closed = "; ".join(store_day_line(d) for d in found) if found else "no answer"
        click.echo(f"  {store} audit: {closed}")
    refused = ", ".join(f"{s} {n}" for s, n in sorted(stats.refused_receipts.items()) if n)
    short = ", ".join(f"{s} {n}" for s, n in sorted(stats.short_cashiers.items()) if n)
    voided = ", ".join(f"{s} {n}" for s, n in sorted(stats.post_voids.items()) if n)
    click.echo(
        f"  planted: receipts refused by the edges ({refused or 'none'}) keep their numbers, "
        "as a real till printed them: receipt gaps unless a till's first or last; cashiers "
        f"short ({short or 'none'}): over/short, flagged beyond the tolerance. Nothing else "
        "should be flagged."
    )
    click.echo(
        f"  post-voids ({voided or 'none'}): undone by every service as if never sold, shown "
        "per till and cashier by `tillstream audit --store S --day D`."
    )
