"""``tillstream edge``: the per-store edge service and POSLog backfill."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from rich.progress import Progress

from tillstream.cli.common import no_card_number, run, settings
from tillstream.cli.edge_support import item_copy, record_limits
from tillstream.cli.quarantine import quarantine
from tillstream.cli.set_aside import set_aside
from tillstream.core.logs import configure_logging
from tillstream.core.settings import Settings
from tillstream_edge.forwarder import Forwarder, forwarder_from_settings
from tillstream_edge.importer import ImportReport, import_files, poslog_files
from tillstream_edge.ingest import ingestor_from_settings
from tillstream_edge.outbox import Outbox, outbox_from_settings


@click.group()
def edge() -> None:
    """The store edge: take events from tills and devices, keep them, publish them."""


_STORE = click.option(
    "--store",
    "store_id",
    callback=no_card_number,  # on every event, and their key
    help="Store id. [env: TILLSTREAM_STORE_ID]",
)
_OUTBOX = click.option(
    "--outbox",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Outbox file. [env: TILLSTREAM_EDGE_OUTBOX; default: outbox.db]",
)


def _require_store(cfg: Settings) -> None:
    if not cfg.store_id:
        raise click.UsageError("a store id is needed: --store ID or TILLSTREAM_STORE_ID")


@edge.command("run")
@_STORE
@click.option(
    "--listen",
    help="HOST:PORT of the HTTP API. [env: TILLSTREAM_EDGE_LISTEN; default: 0.0.0.0:8080]",
)
@_OUTBOX
@click.option(
    "--devices",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML file of serial devices. [env: TILLSTREAM_EDGE_DEVICES]",
)
@click.option(
    "--poslog-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="POSLog drop folder to watch. [env: TILLSTREAM_EDGE_POSLOG_DIR]",
)
@click.option(
    "--tokens",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML file of till tokens; posting then needs the till's token. "
    "[env: TILLSTREAM_EDGE_TOKENS]",
)
def run_edge(
    store_id: str | None,
    listen: str | None,
    outbox: Path | None,
    devices: Path | None,
    poslog_dir: Path | None,
    tokens: Path | None,
) -> None:
    """Run the edge service of one store until SIGTERM or Ctrl-C.

    HTTPS and client certificates come from TILLSTREAM_EDGE_TLS_CERTFILE, _KEYFILE and
    _CLIENT_CAFILE (see docs/edge.md).
    """
    from tillstream_edge.edge import EdgeService

    cfg = settings(
        store_id=store_id,
        edge_listen=listen,
        edge_outbox=outbox,
        edge_devices=devices,
        edge_poslog_dir=poslog_dir,
        edge_tokens=tokens,
    )
    configure_logging(cfg.log_level)
    _require_store(cfg)
    try:
        service = EdgeService(cfg)
    except ValueError as exc:  # a bad devices or tokens file, named (never a token)
        raise click.ClickException(str(exc)) from None
    asyncio.run(service.run())


@edge.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_STORE
@_OUTBOX
@click.option(
    "--no-forward", is_flag=True, help="Only fill the outbox; a running edge service publishes it."
)
def import_(
    paths: tuple[Path, ...], store_id: str | None, outbox: Path | None, no_forward: bool
) -> None:
    """Backfill POSLog files or folders (resumable, idempotent), with a progress bar."""
    cfg = settings(store_id=store_id, edge_outbox=outbox)
    configure_logging("WARNING")
    _require_store(cfg)
    report = run(_import(cfg, list(paths), forward=not no_forward))
    if report.failed:
        raise click.ClickException(f"{len(report.failed)} file(s) could not be imported")


async def _import(cfg: Settings, paths: list[Path], *, forward: bool) -> ImportReport:
    files = list(poslog_files(paths))
    outbox = outbox_from_settings(cfg)
    await outbox.open()
    copy = None
    try:  # a backfill: no plausibility window, no comparison with today's prices
        ingestor = ingestor_from_settings(cfg, outbox, await record_limits(cfg), live=False)
        ingestor.master = copy = await item_copy(cfg)
        with Progress() as progress:
            task = progress.add_task("importing POSLog", total=len(files))
            report = await import_files(
                ingestor, outbox, files, advance=lambda _p: progress.advance(task)
            )
        skipped = sum(len(s) for s in report.skipped.values())
        kept = sum(len(s) for s in report.set_aside.values())
        click.echo(
            f"{report.imported} file(s) imported ({report.events} events, "
            f"{report.duplicates} already known, {skipped} transaction(s) skipped, "
            f"{kept} set aside), "
            f"{report.already_done} already done, {len(report.failed)} failed"
        )
        for path, skips in report.skipped.items():
            for skip in skips:
                where = f"{path}: transaction {skip.label}"
                click.echo(f"  skipped: {where}: {skip.kind}: {skip.reason}")
        for path, kept_ones in report.set_aside.items():
            for one in kept_ones:
                where = f"{path}: transaction {one.label}"
                click.echo(f"  set aside: {where}: {one.kind}: {one.reason}", err=True)
        if kept:
            click.echo(
                f"{kept} transaction(s) set aside, kept in the outbox: fix the cause, then "
                "'tillstream edge set-aside retry --all' (list: 'tillstream edge set-aside list')",
                err=True,
            )
        for path, reason in report.failed.items():
            click.echo(f"  failed: {path}: {reason}", err=True)
        if forward:
            await _drain(outbox, forwarder_from_settings(cfg, outbox))
            if held := (await outbox.backlog()).quarantined:
                click.echo(
                    f"{held} event(s) quarantined, Kafka refuses them: "
                    "see 'tillstream edge quarantine show'",
                    err=True,
                )
    finally:
        await outbox.close()
        if copy is not None:
            await copy.close()
    return report


async def _drain(outbox: Outbox, forwarder: Forwarder) -> None:
    """Publish the outbox to Kafka, showing progress; Kafka outages are waited out."""
    total = (await outbox.backlog()).depth
    runner = asyncio.create_task(forwarder.run())
    with Progress() as progress:
        task = progress.add_task("publishing to Kafka", total=total)
        while (depth := (await outbox.backlog()).depth) > 0 and not runner.done():
            progress.update(task, completed=total - depth)
            await asyncio.sleep(0.2)
        progress.update(task, completed=total - depth)
    forwarder.stop()
    await runner
    await forwarder.close()


edge.add_command(quarantine)
edge.add_command(set_aside)

COMMANDS = [edge]
