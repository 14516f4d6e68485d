"""``tillstream audit``: the sales audit's store-days for auditors and scripts;
``tillstream audit ack``: an acknowledgement of a flag; ``tillstream audit token``: the named
API tokens of scripts (see ``docs/audit.md``)."""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from tillstream.cli.common import settings
from tillstream.cli.service_read import API_OPTION, ServiceAPI, open_database, read
from tillstream_consumers.audit import queries
from tillstream_consumers.audit.acknowledging import NoteError, note_of
from tillstream_consumers.audit.tables import COMPONENT, MIGRATIONS
from tillstream_consumers.runtime import api_tokens
from tillstream_consumers.runtime.access import LOCAL, PERMISSIONS, Principal
from tillstream_consumers.runtime.db import Database, redact_url
from tillstream_consumers.runtime.state import COMPONENT as RUNTIME
from tillstream_consumers.runtime.state import migrations as runtime_migrations

T = TypeVar("T")

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
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("a business day: YYYY-MM-DD") from None


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
@_DB_OPTION
def ack(flag: str, note: str, db_url: str | None) -> None:
    """Acknowledge FLAG (its id, from `tillstream audit --store S --day D`) with a note.

    Written to the audit's database directly, by whoever may open it: recorded as this
    machine's user (the page records the signed-in auditor, the API the token). Kept with
    the flag as an audit trail; a store-day whose flags are all acknowledged is reviewed.
    """
    try:
        checked = note_of({"note": note})
    except NoteError as exc:
        raise click.BadParameter(str(exc), param_hint="--note") from None
    cfg = settings(db_url=db_url)
    db = open_database(cfg.db_url)
    try:
        db.migrate(COMPONENT, list(MIGRATIONS))
        done = queries.acknowledge(db, flag, checked, _this_user(), datetime.now(UTC))
    except queries.UnknownFlag:
        raise click.ClickException(f"no flag {flag} in {redact_url(cfg.db_url)}") from None
    finally:
        db.close()
    click.echo(f"acknowledged {flag} by {done['by']} ({done['by_kind']}) at {done['at']}")


def _this_user() -> Principal:
    """Who runs the command, as the operating system knows them (never a typed name)."""
    user = getpass.getuser()
    return Principal(user, LOCAL, f"{user}@{socket.gethostname()}", frozenset(PERMISSIONS))


@audit.group("token")
def token() -> None:
    """Named API tokens of the audit's read API and acknowledgements, for scripts."""


@token.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    default="read",
    show_default=True,
    help="What it may do, comma-separated: read, ack, reopen.",
)
@_DB_OPTION
def token_create(name: str, scopes: str, db_url: str | None) -> None:
    """Make token NAME and print it, once: only its hash is kept."""
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    made = _on_tokens(db_url, lambda db: api_tokens.create(db, name, wanted, datetime.now(UTC)))
    click.echo(made)
    click.echo(
        f"token {name} ({', '.join(wanted)}): shown once; send it as 'Authorization: Bearer "
        "<token>'. A running audit service accepts it at once.",
        err=True,
    )


@token.command("list")
@_DB_OPTION
def token_list(db_url: str | None) -> None:
    """Every token: name, scopes, made, revoked (never the token itself)."""
    for t in _on_tokens(db_url, api_tokens.listed):
        revoked = f"revoked {t.revoked_at}" if t.revoked_at else "active"
        click.echo(f"{t.name}  {','.join(t.scopes)}  made {t.created_at}  {revoked}")


@token.command("revoke")
@click.argument("name")
@_DB_OPTION
def token_revoke(name: str, db_url: str | None) -> None:
    """Revoke token NAME: refused from now on (its trail stays)."""
    _on_tokens(db_url, lambda db: api_tokens.revoke(db, name, datetime.now(UTC)))
    click.echo(f"token {name} revoked")


def _on_tokens(db_url: str | None, fn: Callable[[Database], T]) -> T:
    cfg = settings(db_url=db_url)
    db = open_database(cfg.db_url)
    try:
        db.migrate(RUNTIME, runtime_migrations(db))
        with db.transaction():
            return fn(db)
    except api_tokens.TokenError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.close()


COMMANDS = [audit]
