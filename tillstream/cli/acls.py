"""``tillstream acls``: print tillstream's Kafka ACL model, and apply it to a cluster."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from aiokafka.errors import KafkaError

from tillstream.cli.common import run, settings
from tillstream.core import acls
from tillstream_consumers.runtime import deadletter
from tillstream_consumers.runtime.loader import BUILTIN, ConsumerNotFound, load_consumer

F = TypeVar("F", bound=Callable[..., Any])


@click.group("acls")
def acls_group() -> None:
    """Kafka ACLs: stores write their topics and read master data, consumers read theirs,
    head office publishes master data and the estate's desired state (docs/security.md)."""


def _model_options(command: F) -> F:
    options = [
        click.option(
            "--store",
            "stores",
            multiple=True,
            help="A store id (principal User:store-<id>); repeat for each store.",
        ),
        click.option(
            "--stores-file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="A file of store ids, one a line ('#' starts a comment).",
        ),
        click.option(
            "--consumer",
            "consumers",
            multiple=True,
            help="A consumer (erp, crm, analytics, audit, fleet, an entry point or "
            "package.module:Class); its principal is User:<its group>. Repeatable. "
            "[default: erp, crm, analytics, audit, fleet]",
        ),
        click.option(
            "--publisher",
            "publishers",
            multiple=True,
            help="Head office's master-data publisher (principal User:<name>), which may "
            "read, write and create tillstream.items and tillstream.prices. Repeatable. "
            f"[default: {acls.MASTER_DATA_PUBLISHER}]",
        ),
        click.option(
            "--fleet-publisher",
            "fleet_publishers",
            multiple=True,
            help="Head office's estate publisher (principal User:<name>: who runs "
            "'tillstream fleet set|apply|rotate-token'), which may read, write and create "
            f"tillstream.estate-desired. Repeatable. [default: {acls.ESTATE_PUBLISHER}]",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@acls_group.command("show")
@_model_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def show(
    stores: tuple[str, ...],
    stores_file: Path | None,
    consumers: tuple[str, ...],
    publishers: tuple[str, ...],
    fleet_publishers: tuple[str, ...],
    as_json: bool,
) -> None:
    """Print the ACLs the model grants these stores, consumers and publishers (contacts no
    broker)."""
    _print(_bindings(stores, stores_file, consumers, publishers, fleet_publishers), as_json)


@acls_group.command("apply")
@_model_options
@click.option("--dry-run", is_flag=True, help="Only report what would be created.")
def apply(
    stores: tuple[str, ...],
    stores_file: Path | None,
    consumers: tuple[str, ...],
    publishers: tuple[str, ...],
    fleet_publishers: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Create the model's ACLs that the cluster lacks; existing ACLs are kept.

    Run it as an operator principal in the brokers' super.users (the TILLSTREAM_KAFKA_*
    settings say how to connect). ACLs of these principals that the model does not grant
    are listed, not removed.
    """
    bindings = _bindings(stores, stores_file, consumers, publishers, fleet_publishers)
    cfg = settings()
    try:
        report = run(acls.apply(cfg, bindings, dry_run=dry_run))
    except KafkaError as exc:
        raise click.ClickException(
            f"cannot apply ACLs on {cfg.kafka_bootstrap_servers}: {exc}"
        ) from None
    verb = "would create" if dry_run else "created"
    for binding in report.created:
        click.echo(f"{verb:<12} {binding}")
    for binding in report.present:
        click.echo(f"{'present':<12} {binding}")
    for binding in report.extra:
        click.echo(f"{'not in model':<12} {binding}", err=True)
    click.echo(
        f"-- {len(report.created)} {verb}, {len(report.present)} already present, "
        f"{len(report.extra)} not in the model (left as they are)",
        err=True,
    )


def _bindings(
    stores: Sequence[str],
    stores_file: Path | None,
    consumers: Sequence[str],
    publishers: Sequence[str],
    fleet_publishers: Sequence[str] = (),
) -> list[acls.AclBinding]:
    store_ids = [*stores, *(_read_stores(stores_file) if stores_file else [])]
    try:
        access = [consumer_access(spec) for spec in consumers or BUILTIN]
        return acls.acl_bindings(
            store_ids,
            access,
            publishers or [acls.MASTER_DATA_PUBLISHER],
            fleet_publishers or [acls.ESTATE_PUBLISHER],
        )
    except (ConsumerNotFound, ValueError) as exc:
        raise click.UsageError(str(exc)) from None


def _read_stores(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def consumer_access(spec: str) -> acls.ConsumerAccess:
    """What a consumer reads and writes, from its class: the model follows the code."""
    consumer = load_consumer(spec)
    return acls.ConsumerAccess(
        group=consumer.name,
        reads=tuple(consumer.topics),
        writes=(deadletter.topic_for(consumer.name).name, *consumer.publishes),
    )


def _print(bindings: Sequence[acls.AclBinding], as_json: bool) -> None:
    for binding in bindings:
        click.echo(json.dumps(binding.as_dict()) if as_json else str(binding))


COMMANDS = [acls_group]
