"""``tillstream edge set-aside``: POSLog transactions the edge could not read, kept in the
store's outbox until they are re-run after a fix.

``list`` shows them (id, when, file, transaction, cause, reason); ``show`` prints one's
document (card numbers masked) for the integrator; ``retry`` converts them again with the
code of now (after an upgrade) or a dialect named, and puts their events in the outbox,
exactly once. A running edge service publishes them within seconds; the command works beside
it, like ``tillstream edge quarantine``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from tillstream.cli.common import no_card_number, run, settings
from tillstream.cli.edge_support import item_copy, record_limits
from tillstream.core.settings import Settings
from tillstream_edge.ingest import ingestor_from_settings
from tillstream_edge.outbox import Outbox
from tillstream_edge.poslog_dialect import BY_NAME
from tillstream_edge.poslog_intake import Retried, retry_set_aside
from tillstream_edge.set_aside import KeptTransaction

_OUTBOX = click.option(
    "--outbox",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Outbox file. [env: TILLSTREAM_EDGE_OUTBOX; default: outbox.db]",
)


@click.group("set-aside")
def set_aside() -> None:
    """POSLog transactions the edge could not read, kept to be re-run after a fix."""


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


@set_aside.command("list")
@_OUTBOX
@click.option("--all", "everything", is_flag=True, help="Resolved ones too.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(outbox: Path | None, everything: bool, as_json: bool) -> None:
    """List set-aside transactions, oldest first: id, when, file, transaction, cause, reason."""
    rows = run(_kept(_outbox_path(outbox), None, everything))
    for row in rows:
        if as_json:
            click.echo(json.dumps(row.as_json()))
            continue
        state = f"resolved {_when(row.resolved_at)}" if row.resolved_at else row.cause
        click.echo(
            f"{row.id:>6}  {_when(row.set_aside_at)}  {row.source}  transaction {row.label}  "
            f"{row.kind}  [{state}]  {row.reason}"
        )
    if not as_json:
        open_rows = sum(1 for r in rows if r.resolved_at is None)
        click.echo(f"-- {open_rows} open set-aside transaction(s)", err=True)


@set_aside.command("show")
@_OUTBOX
@click.argument("row_id", type=int)
def show(outbox: Path | None, row_id: int) -> None:
    """Print one set-aside transaction's reason and its document (card numbers masked)."""
    rows = run(_kept(_outbox_path(outbox), [row_id], True))
    if not rows:
        raise click.ClickException(f"no set-aside transaction {row_id}")
    row = rows[0]
    click.echo(f"# {row.source}: transaction {row.label} ({row.kind}), {row.cause}", err=True)
    click.echo(f"# {row.reason}", err=True)
    click.echo(row.document.decode("utf-8", "replace"))


@set_aside.command("retry")
@_OUTBOX
@click.argument("row_ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Every open set-aside transaction.")
@click.option(
    "--dialect",
    type=click.Choice(sorted(BY_NAME)),
    help="Read them as this vendor dialect (default: the edge's setting, else detected).",
)
@click.option(
    "--store", "store_id", callback=no_card_number, help="Store id. [env: TILLSTREAM_STORE_ID]"
)
def retry(
    outbox: Path | None,
    row_ids: tuple[int, ...],
    everything: bool,
    dialect: str | None,
    store_id: str | None,
) -> None:
    """Convert set-aside transactions (ROW_IDS, or --all) again and queue their events."""
    if bool(row_ids) == everything:
        raise click.UsageError("name the transactions to retry (ID...) or give --all")
    cfg = settings(store_id=store_id, edge_outbox=_outbox_path(outbox))
    if not cfg.store_id:
        raise click.UsageError("a store id is needed: --store ID or TILLSTREAM_STORE_ID")
    results = run(_retry(cfg, None if everything else list(row_ids), dialect))
    for result in results:
        detail = f"{len(result.event_ids)} event(s)" if result.outcome == "published" else ""
        click.echo(
            f"{result.id:>6}  transaction {result.label}: {result.outcome}"
            f"{'  ' + detail if detail else ''}{'  ' + result.reason if result.reason else ''}"
        )
    published = sum(1 for r in results if r.outcome == "published")
    click.echo(
        f"{published} of {len(results)} transaction(s) now in the queue; "
        "the edge service publishes them",
        err=True,
    )
    unknown = sorted(set(row_ids) - {r.id for r in results})
    if unknown:
        raise click.ClickException(
            f"not open set-aside transactions: {', '.join(map(str, unknown))}"
        )


def _outbox_path(outbox: Path | None) -> Path:
    path = outbox or settings().edge_outbox
    if not path.is_file():
        raise click.ClickException(f"no outbox at {path} (--outbox or TILLSTREAM_EDGE_OUTBOX)")
    return path


async def _kept(path: Path, ids: list[int] | None, everything: bool) -> list[KeptTransaction]:
    box = Outbox(path)
    await box.open()
    try:
        return await box.kept(ids, resolved=everything)
    finally:
        await box.close()


async def _retry(cfg: Settings, ids: list[int] | None, dialect: str | None) -> list[Retried]:
    box = Outbox(cfg.edge_outbox)
    await box.open()
    copy = None
    try:  # as a backfill: the transactions may be old; no comparison with today's prices
        ingestor = ingestor_from_settings(cfg, box, await record_limits(cfg), live=False)
        ingestor.master = copy = await item_copy(cfg)
        return await retry_set_aside(ingestor, ids, dialect=dialect)
    finally:
        await box.close()
        if copy is not None:
            await copy.close()
