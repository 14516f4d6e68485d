"""``tillstream items publish`` and ``tillstream prices publish``: head office's master data
to the compacted topics, as the changes against what they hold (docs/master-data.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from aiokafka.errors import KafkaError

from tillstream.cli.common import run, settings
from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.registry import registry_from_settings
from tillstream.masterdata.changes import Changes, MassDeleteRefused, MasterConflict
from tillstream.masterdata.csv_file import MasterFileError
from tillstream.masterdata.publish import ITEM_KIND, PRICE_KIND, Kind, publish_file
from tillstream.masterdata.topic_state import TopicReadError

F = TypeVar("F", bound=Callable[..., Any])


def _publish_options(command: F) -> F:
    options = [
        click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
        click.option("--dry-run", is_flag=True, help="Say what would change; publish nothing."),
        click.option(
            "--full",
            is_flag=True,
            help="FILE is the whole master: what the topic holds and FILE does not is "
            "deleted (a tombstone per key).",
        ),
        click.option(
            "--allow-mass-delete",
            is_flag=True,
            help="With --full: allow deleting more than 10% of what the topic holds.",
        ),
        click.option(
            "--show",
            type=click.IntRange(0),
            default=10,
            show_default=True,
            help="Keys listed per kind of change with --dry-run.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _publish(
    kind: Kind, file: Path, dry_run: bool, full: bool, allow_mass_delete: bool, show: int
) -> None:
    if allow_mass_delete and not full:
        raise click.UsageError("--allow-mass-delete only means something with --full")
    cfg = settings()
    codec = AvroCodec(registry_from_settings(cfg))
    job = publish_file(
        cfg,
        codec,
        kind,
        file,
        full=full,
        allow_mass_delete=allow_mass_delete,
        dry_run=dry_run,
        progress=_progress,
    )
    try:
        changes = run(job)
    except (MasterFileError, MassDeleteRefused, MasterConflict) as exc:
        raise click.ClickException(f"{exc}\nnothing published") from None
    except (KafkaError, TopicReadError, CodecError) as exc:
        raise click.ClickException(
            f"cannot publish {kind.name} on {cfg.kafka_bootstrap_servers}: {exc}"
        ) from None
    if dry_run:
        _print_changes(kind, changes, show)
        click.echo(f"{changes.summary(kind.name)} (dry run: nothing published)", err=True)
    else:
        click.echo(changes.summary(kind.name), err=True)


def _progress(line: str) -> None:
    click.echo(line, err=True)


def _print_changes(kind: Kind, changes: Changes, show: int) -> None:
    for label, keys in (
        ("new", list(changes.new)),
        ("changed", list(changes.changed)),
        ("deleted", changes.deleted),
    ):
        for key in keys[:show]:
            click.echo(f"{label:<8} {kind.describe_key(key)}")
        if len(keys) > show:
            click.echo(f"{label:<8} ... and {len(keys) - show} more")


@click.group()
def items() -> None:
    """The item master on tillstream.items (docs/master-data.md)."""


@items.command("publish")
@_publish_options
def publish_items(
    file: Path, dry_run: bool, full: bool, allow_mass_delete: bool, show: int
) -> None:
    """Publish the items of FILE.csv that are new or changed against tillstream.items.

    Header: sku,gtins,description,unit_of_measure,weighed,stock_item, optionally
    tax_class,reorder_point,lead_time_days,supplier, in any order (other columns are
    ignored). GTINs are separated by '|' (one GTIN in any of its lengths); booleans are true
    or false; no cell holds a control character, no text starts like a spreadsheet formula.
    A file with any problem publishes nothing.
    """
    _publish(ITEM_KIND, file, dry_run, full, allow_mass_delete, show)


@items.command("import", hidden=True, context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def import_(args: tuple[str, ...]) -> None:
    """Retired: the ERP takes its item master from tillstream.items."""
    raise click.ClickException(
        "`tillstream items import` is retired: the ERP takes its item master (reorder "
        "points, lead times, supplier) from the tillstream.items topic. Publish the item "
        "master with `tillstream items publish FILE.csv` (columns sku,gtins,description,"
        "unit_of_measure,weighed,stock_item and optionally tax_class,reorder_point,"
        "lead_time_days,supplier); see docs/erp.md."
    )


@click.group()
def prices() -> None:
    """List prices on tillstream.prices (docs/master-data.md)."""


@prices.command("publish")
@_publish_options
def publish_prices(
    file: Path, dry_run: bool, full: bool, allow_mass_delete: bool, show: int
) -> None:
    """Publish the prices of FILE.csv that are new or changed against tillstream.prices.

    Header: sku,store_id,amount,currency,valid_from,valid_until in any order (other columns
    are ignored). store_id empty: the chain-wide price. amount: ASCII digits and '.'.
    Validity: a date (the store's day; valid_until inclusive), a time with its offset
    (valid_until exclusive), or empty (open-ended; a valid_until in the year 9999 too). A
    store's prices, and the chain's, are in one currency. A file with any problem publishes
    nothing.
    """
    _publish(PRICE_KIND, file, dry_run, full, allow_mass_delete, show)


COMMANDS = [items, prices]
