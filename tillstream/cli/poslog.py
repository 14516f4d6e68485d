"""``tillstream poslog check``: what the edge would make of POSLog files, offline.

For integrators onboarding a till vendor: per transaction, the events it would become (key
fields and totals) or why it would be skipped or set aside, and the elements of each
document that nothing read. No Kafka, no edge. ``--json`` gives one object per file.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from tillstream.cli.common import settings
from tillstream.core.codec import AvroCodec
from tillstream.core.registry import FileRegistry
from tillstream.core.schemas import SchemaSet
from tillstream_edge.importer import poslog_files
from tillstream_edge.poslog import PoslogError
from tillstream_edge.poslog_check import CheckedDocument, CheckedTransaction, Checker
from tillstream_edge.poslog_dialect import BY_NAME

_SHOWN_NOT_READ = 25


@click.group()
def poslog() -> None:
    """ARTS POSLog documents: check what tillstream makes of them."""


@poslog.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.option(
    "--dialect",
    type=click.Choice(sorted(BY_NAME)),
    help="Read as this vendor dialect (default: detected per document).",
)
@click.option(
    "--currency", help="The store's currency, for amounts that name none. [default: the store's]"
)
@click.option(
    "--timezone", "zone", help="The store's time zone, for zone-less times. [default: the store's]"
)
@click.option("--strict", is_flag=True, help="Exit 1 when a transaction would be set aside.")
def check(
    paths: tuple[Path, ...],
    as_json: bool,
    dialect: str | None,
    currency: str | None,
    zone: str | None,
    strict: bool,
) -> None:
    """Show what each transaction of POSLog FILES (or folders) would become, offline."""
    cfg = settings()
    try:
        timezone = ZoneInfo(zone or cfg.store_timezone)
    except (ValueError, KeyError) as exc:
        raise click.BadParameter(f"unknown time zone {zone!r}", param_hint="--timezone") from exc
    schema_set = SchemaSet()
    checker = Checker(
        AvroCodec(FileRegistry(schema_set), schema_set),
        currency=(currency or cfg.store_currency).upper(),
        timezone=timezone,
        dialect=dialect,
    )
    refused = kept = 0
    try:
        for path in poslog_files(paths):
            try:
                checked = checker.check(path.read_bytes())
            except (PoslogError, OSError) as exc:
                refused += 1
                _refused(path, str(exc), as_json)
                continue
            kept += checked.counts()["set_aside"]
            if as_json:
                click.echo(json.dumps(_as_json(path, checked), default=_plain))
            else:
                _print(path, checked)
    finally:
        checker.close()
    if refused or (strict and kept):
        raise SystemExit(1)


def _refused(path: Path, reason: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"file": str(path), "refused": reason}))
    else:
        click.echo(f"{path}: refused whole: {reason}")


def _as_json(path: Path, checked: CheckedDocument) -> dict[str, Any]:
    return {
        "file": str(path),
        "dialect": checked.dialect,
        "envelope": checked.envelope,
        "transactions": [t.as_json() for t in checked.transactions],
        "not_read": [{"element": p, "count": n} for p, n in checked.not_read],
    }


def _print(path: Path, checked: CheckedDocument) -> None:
    counts = checked.counts()
    inside = f", inside {checked.envelope}" if checked.envelope else ""
    click.echo(
        f"{path}: dialect {checked.dialect}{inside}; {len(checked.transactions)} transaction(s): "
        f"{counts['converted']} converted, {counts['skipped']} skipped, "
        f"{counts['set_aside']} set aside"
    )
    for tx in checked.transactions:
        click.echo(f"  #{tx.index} {tx.sequence_number or '-'}: {_summary(tx)}")
    if checked.not_read:
        click.echo("  not read:")
        for element, count in checked.not_read[:_SHOWN_NOT_READ]:
            click.echo(f"    {element}" + (f" ({count})" if count > 1 else ""))
        if len(checked.not_read) > _SHOWN_NOT_READ:
            click.echo(f"    and {len(checked.not_read) - _SHOWN_NOT_READ} more (--json lists all)")


def _summary(tx: CheckedTransaction) -> str:
    if tx.outcome == "skipped":
        return f"skipped: {tx.kind}: {tx.reason}"
    if tx.outcome == "set_aside":
        return f"SET ASIDE ({tx.kind}): {tx.reason}"
    parts = []
    for event_type, r in tx.events:
        if event_type == "sale":
            t = r["totals"]
            parts.append(
                f"sale store {r['store_id']} till {r['terminal_id']} receipt "
                f"{r['receipt_number']} day {r['business_day']}, {len(r['lines'])} line(s), "
                f"gross {t['gross_amount']:f} discount {t['discount_amount']:f} "
                f"tax {t['tax_amount']:f} net {t['net_amount']:f} {r['currency']}"
                + (f", customer {r['customer_id']}" if r["customer_id"] else "")
            )
        elif event_type == "payment":
            card = r["card"]
            last = f" ...{card['last_four']}" if card else ""
            parts.append(f"payment {r['method']} {r['status']} {r['amount']:f}{last}")
        elif event_type == "sale_void":
            amount = f" {r['voided_amount']:f} {r['currency']}" if r["voided_amount"] else ""
            parts.append(
                f"post-void of till {r['voided_terminal_id']} receipt "
                f"{r['voided_receipt_number']}{amount} (sale {r['voided_event_id']})"
            )
        else:
            amounts = ", ".join(f"{a['tender']} {a['amount']:f}" for a in r["tenders"])
            reason = f" reason {r['reason']}" if r["reason"] else ""
            parts.append(f"till event {r['kind']}{' ' + amounts if amounts else ''}{reason}")
    return "; ".join(parts)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


COMMANDS = [poslog]
