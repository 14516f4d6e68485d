"""``tillstream audit``: the sales audit's store-days for auditors and scripts, and
``tillstream audit ack``: an auditor's acknowledgement of a flag (see ``docs/audit.md``)."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, date, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from tillstream.cli.common import settings
from tillstream.cli.service_read import API_OPTION, ServiceAPI, open_database, read
from tillstream.core.days import parse_day
from tillstream_consumers.audit import queries
from tillstream_consumers.audit.tables import COMPONENT, MIGRATIONS
from tillstream_consumers.runtime.db import Database

_DB_OPTION = click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="Database of the audit service. [default: TILLSTREAM_DB_URL]",
)


def _day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return parse_day(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(invoke_without_command=True)
@click.option("--store", metavar="STORE", help="One store: its days, or with --day its detail.")
@click.option("--day", metavar="YYYY-MM-DD", callback=_day, help="A business day (store-local).")
@click.option("--json", "as_json", is_flag=True, help="JSON (amounts as decimal strings).")
@_DB_OPTION
@API_OPTION
@click.pass_context
def audit(
    ctx: click.Context,
    store: str | None,
    day: date | None,
    as_json: bool,
    db_url: str | None,
    api_url: str | None,
) -> None:
    """Store-days with their status and open flags (of --day, default the latest day with
    events; of --store); with --store and --day, that store-day in detail: tills, over/short
    by tender and cashier, post-voids by till and cashier, and every flag with its id and
    acknowledgements.

    Status: silent, open, closing, closed-balanced (every open flag acknowledged, or none),
    closed-unbalanced.
    """
    if ctx.invoked_subcommand is not None:
        return
    cfg = settings(db_url=db_url)
    if store is not None and day is not None:
        shown_day = day

        def detail(db: Database) -> dict[str, Any] | None:
            db.migrate(COMPONENT, list(MIGRATIONS))
            return queries.store_day(db, store, shown_day, datetime.now(UTC), cfg)

        def detail_remote(api: ServiceAPI) -> dict[str, Any] | None:
            found: dict[str, Any] = api.get(f"/v1/audit/days/{store}/{shown_day.isoformat()}")
            return found

        found = read(cfg, cfg.db_url, api_url, detail, detail_remote, what="audit")
        if found is None:
            raise click.ClickException(f"no audit of store {store} on {shown_day}")
        if as_json:
            click.echo(json.dumps(found, indent=2))
        else:
            _print_detail(found)
        return

    def listing(db: Database) -> list[dict[str, Any]]:
        db.migrate(COMPONENT, list(MIGRATIONS))
        wanted = day.isoformat() if day else None
        if wanted is None and store is None:
            wanted = queries.latest_day(db)
        return [s.as_json() for s in queries.store_days(db, wanted, store)]

    def listing_remote(api: ServiceAPI) -> list[dict[str, Any]]:
        days: list[dict[str, Any]] = api.get(
            "/v1/audit/days", day=day.isoformat() if day else None, store=store
        )
        return days

    days = read(cfg, cfg.db_url, api_url, listing, listing_remote, what="audit")
    if as_json:
        click.echo(json.dumps(days, indent=2))
        return
    if not days:
        click.echo("no store-days audited" + (f" for {store}" if store else ""))
        return
    table = Table("Day", "Store", "Status", "Events", "Tills settled", "Open flags", "Unacked")
    for d in days:
        flags = ", ".join(f"{kind} {n}" for kind, n in d["open_flags"].items())
        table.add_row(
            d["business_day"],
            d["store_id"],
            d["status"],
            str(d["events"]),
            f"{d['tills_settled']}/{d['tills_traded']}",
            flags or "-",
            str(d["unacknowledged"]),
        )
    Console().print(table)


def _print_detail(d: dict[str, Any]) -> None:
    console = Console()
    console.print(
        f"[bold]{d['store_id']} {d['business_day']}[/bold]: {d['status']}, {d['events']} "
        f"events, {d['tills_settled']}/{d['tills_traded']} tills settled"
        + (f", closed at {d['closed_at']}" if d["closed_at"] else "")
    )
    tills = Table("Till", "Operators", "Receipts", "Settled at", title="Tills")
    for t in d["tills"]:
        tills.add_row(
            t["terminal_id"],
            ", ".join(t["operators"]),
            str(t["transactions"]),
            t["settled_at"] or "never",
        )
    console.print(tills)
    if d["balances"]:
        balances = Table(
            "Till", "Cashier", "Tender", "Expected", "Declared", "Over/short", title="Balances"
        )
        for b in d["balances"]:
            balances.add_row(
                b["terminal_id"],
                b["operator_id"] or "",
                b["tender"],
                b["expected"],
                b["declared"],
                b["over_short"],
            )
        console.print(balances)
        cashiers = ", ".join(f"{k} {v}" for k, v in d["over_short_by_cashier"].items())
        console.print(f"Over/short by cashier: {cashiers}")
    _print_post_voids(console, d)
    if d["flags"]:
        flags = Table("Flag", "Kind", "Subject", "What", "State", title="Flags")
        for f in d["flags"]:
            acks = f["acknowledgements"]
            state = "open" if f["open"] else f"resolved {f['resolved_at']}"
            if acks:
                state += f", acknowledged by {acks[-1]['by']}: {acks[-1]['note']}"
            flags.add_row(f["flag_id"], f["kind"], f["subject"], f["message"], state)
        console.print(flags)
    else:
        console.print("No flags.")
    if d["pending_payments"]:
        console.print(
            f"{len(d['pending_payments'])} receipt(s) whose payments do not add up yet "
            "(their till is still trading)"
        )


def _print_post_voids(console: Console, d: dict[str, Any]) -> None:
    """The store-day's post-voids, and their count and amount per till and cashier."""
    voids = d.get("post_voids") or []  # absent from an audit service before post-voids
    if not voids:
        return
    table = Table(
        "Till", "Number", "Cashier", "Voided receipt", "Amount", "At", "Reason", title="Post-voids"
    )
    for v in voids:
        voided = f"{v['voided_terminal_id']} {v['voided_number'] or v['voided_event_id']}"
        table.add_row(
            v["terminal_id"],
            v["number"] or "",
            v["cashier_id"] or "",
            voided + ("" if v["counted"] else " (voided before)"),
            v["amount"] or "",
            v["at"],
            v["reason"] or "",
        )
    console.print(table)
    for what, totals in (
        ("till", d["post_voids_by_till"]),
        ("cashier", d["post_voids_by_cashier"]),
    ):
        shown = ", ".join(f"{k} {t['count']} ({t['amount']})" for k, t in totals.items())
        console.print(f"Post-voids by {what}: {shown}")


@audit.command("ack")
@click.argument("flag")
@click.option("--note", required=True, help="What the auditor found or did.")
@click.option("--by", metavar="NAME", help="Who acknowledges. [default: the login name]")
@_DB_OPTION
def ack(flag: str, note: str, by: str | None, db_url: str | None) -> None:
    """Acknowledge FLAG (its id, from `tillstream audit --store S --day D`) with a note.

    Acknowledgements are kept with the flag as an audit trail; a store-day closes balanced
    once every open flag is acknowledged.
    """
    cfg = settings(db_url=db_url)
    db = open_database(cfg.db_url)
    try:
        db.migrate(COMPONENT, list(MIGRATIONS))
        done = queries.acknowledge(db, flag, note, by or getpass.getuser(), datetime.now(UTC))
    except (queries.UnknownFlag, ValueError) as exc:
        raise click.ClickException(str(exc.args[0] if exc.args else exc)) from None
    finally:
        db.close()
    click.echo(f"acknowledged {flag} by {done['by']} at {done['at']}")


COMMANDS = [audit]
