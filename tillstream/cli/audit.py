"""``tillstream audit``: the sales audit's store-days for auditors and scripts;
``tillstream audit ack``: an acknowledgement of a flag; ``tillstream audit token``: the named
API tokens of scripts (see ``docs/audit.md``)."""

from __future__ import annotations

import getpass
import json
import socket
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import click

from tillstream.cli.api_tokens import token_group
from tillstream.cli.common import settings
from tillstream.cli.service_read import API_OPTION, ServiceAPI, open_database, read
from tillstream.cli.tables import Output
from tillstream.core.days import parse_day
from tillstream.core.settings import Settings
from tillstream_consumers.audit import queries
from tillstream_consumers.audit.acknowledging import NoteError, note_of
from tillstream_consumers.audit.at_stake import describe
from tillstream_consumers.audit.drawers import ATTRIBUTIONS
from tillstream_consumers.audit.tables import COMPONENT, MIGRATIONS
from tillstream_consumers.runtime.access import LOCAL, PERMISSIONS, Principal
from tillstream_consumers.runtime.db import Database, redact_url

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

    Status: silent, open, closing, closed-balanced (nothing flagged), closed-reviewed (every
    open flag acknowledged: reviewed, not balanced; its money at stake shown),
    closed-unbalanced (an open flag nobody acknowledged). Piped or redirected (cron mail,
    logs), the tables are plain lines as wide as their content.
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

        found = read(
            cfg, cfg.db_url, api_url, detail, detail_remote, what="audit", token_setting=_token(cfg)
        )
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

    days = read(
        cfg, cfg.db_url, api_url, listing, listing_remote, what="audit", token_setting=_token(cfg)
    )
    if as_json:
        click.echo(json.dumps(days, indent=2))
        return
    out = Output()
    if not days:
        out.line("no store-days audited" + (f" for {store}" if store else ""))
        return
    headers = ["Day", "Store", "Status", "At stake", "Events", "Tills", "Open flags", "Unacked"]
    rows = [
        [
            d["business_day"],
            d["store_id"],
            d["status"],
            describe(d.get("at_stake") or {}),  # absent before money at stake
            str(d["events"]),
            f"{d['tills_settled']}/{d['tills_traded']}",
            ", ".join(f"{kind} {n}" for kind, n in d["open_flags"].items()) or "-",
            str(d["unacknowledged"]),
        ]
        for d in days
    ]
    title = None
    if len({d["business_day"] for d in days}) == 1:  # one day: said once, not on every row
        title = f"Store-days of {days[0]['business_day']}"
        headers, rows = headers[1:], [r[1:] for r in rows]
    out.table(
        headers,
        rows,
        title=title,
        whole={"Day", "Store", "Status"},
        words={"At stake", "Open flags"},
    )


def _money(amount: str | None, currency: str | None) -> str:
    """An amount beside its currency (``-20.00 EUR``)."""
    if amount is None:
        return ""
    return f"{amount} {currency}" if currency else amount


def _print_detail(d: dict[str, Any]) -> None:
    out = Output()
    currency = d.get("currency")
    out.line(
        f"{d['store_id']} {d['business_day']}: {d['status']}, {d['events']} events, "
        f"{d['tills_settled']}/{d['tills_traded']} tills settled"
        + (f", closed at {d['closed_at']}" if d["closed_at"] else "")
    )
    if "at_stake" in d:  # absent from an audit service before money at stake
        reviewed = " (every flag acknowledged: reviewed, not balanced)"
        out.line(
            f"At stake: {describe(d['at_stake'])}"
            + (reviewed if d["status"] == "closed-reviewed" else "")
        )
    out.table(
        ["Till", "Operators", "Receipts", "Settled at"],
        [
            [t["terminal_id"], ", ".join(t["operators"]), str(t["transactions"]),
             t["settled_at"] or "never"]
            for t in d["tills"]
        ],
        title="Tills",
    )  # fmt: skip
    _print_drawers(out, d)
    if d["balances"]:
        out.table(
            ["Till", "Cashier", "Tender", "Expected", "Declared", "Over/short"],
            [
                [
                    b["terminal_id"],
                    b["operator_id"] or "",
                    b["tender"],
                    _money(b["expected"], currency),
                    _money(b["declared"], currency),
                    _money(b["over_short"], currency),
                ]
                for b in d["balances"]
            ],
            title="Balances",
        )
        cashiers = ", ".join(
            f"{k} {_money(v, currency)}" for k, v in d["over_short_by_cashier"].items()
        )
        out.line(f"Over/short by cashier: {cashiers}")
    _print_post_voids(out, d)
    if d["flags"]:
        out.table(
            ["Flag", "Kind", "Subject", "What", "State"],
            [[f["flag_id"], f["kind"], f["subject"], f["message"], _state(f)] for f in d["flags"]],
            title="Flags",
            whole={"Flag", "Kind"},
        )
        steps = {f["kind"]: f.get("next_step") for f in d["flags"] if f["open"]}
        for kind, step in steps.items():
            if step:
                out.line(f"Next, {kind}: {step}")
    else:
        out.line("No flags.")
    if d["pending_payments"]:
        out.line(
            f"{len(d['pending_payments'])} receipt(s) whose payments do not add up yet "
            "(their till is still trading)"
        )


def _state(f: dict[str, Any]) -> str:
    acks = f["acknowledgements"]
    state = "open" if f["open"] else f"resolved {f['resolved_at']}"
    if acks:
        state += f", acknowledged by {acks[-1]['by']} at {acks[-1]['at']}: {acks[-1]['note']}"
    return state


def _print_drawers(out: Output, d: dict[str, Any]) -> None:
    """Everyone who worked each till's drawer: shifts, receipts, sales, their over/short."""
    rows = [
        [
            t["terminal_id"],
            c["operator_id"],
            ", ".join(
                f"{s['signed_on']} - {s['signed_off'] or 'not signed off'}" for s in c["shifts"]
            )
            or "never signed on",
            str(c["receipts"]),
            _money(c["sales"], c.get("currency")),
            _money(c["over_short"], c.get("currency")),
        ]
        for t in d["tills"]
        for c in t.get("cashiers") or []  # absent from an audit service before drawers
    ]
    if not rows:
        return
    out.table(
        ["Till", "Cashier", "Signed on - off", "Receipts", "Sales", "Over/short"],
        rows,
        title="Who worked each drawer",
    )
    attribution = d.get("drawer_attribution")
    if attribution in ATTRIBUTIONS:
        out.line(f"Over/short {ATTRIBUTIONS[attribution]} ({attribution}).")


def _print_post_voids(out: Output, d: dict[str, Any]) -> None:
    """The store-day's post-voids, and their count and amount per till and cashier."""
    voids = d.get("post_voids") or []  # absent from an audit service before post-voids
    if not voids:
        return
    currency = d.get("currency")
    out.table(
        ["Till", "Number", "Cashier", "Voided receipt", "Amount", "At", "Reason"],
        [
            [
                v["terminal_id"],
                v["number"] or "",
                v["cashier_id"] or "",
                f"{v['voided_terminal_id']} {v['voided_number'] or v['voided_event_id']}"
                + ("" if v["counted"] else " (voided before)"),
                _money(v["amount"], currency),
                v["at"],
                v["reason"] or "",
            ]
            for v in voids
        ],
        title="Post-voids",
    )
    for what, totals in (
        ("till", d["post_voids_by_till"]),
        ("cashier", d["post_voids_by_cashier"]),
    ):
        shown = ", ".join(
            f"{k} {t['count']} ({_money(t['amount'], currency)})" for k, t in totals.items()
        )
        out.line(f"Post-voids by {what}: {shown}")


@audit.command("ack")
@click.argument("flag")
@click.option("--note", required=True, help="What the auditor found or did.")
@_DB_OPTION
@API_OPTION
def ack(flag: str, note: str, db_url: str | None, api_url: str | None) -> None:
    """Acknowledge FLAG (its id, from `tillstream audit --store S --day D`) with a note.

    Kept with the flag as an audit trail. A closed store-day whose open flags are all
    acknowledged is closed-reviewed: reviewed, not balanced (its money at stake stays shown);
    only the facts close a flag. Written to the audit's database directly, recorded as this
    machine's user; with --api, through the audit service's API (POST
    /v1/audit/flags/FLAG/ack) with the named token of TILLSTREAM_AUDIT_API_TOKEN, recorded
    as that token.
    """
    try:
        checked = note_of({"note": note})
    except NoteError as exc:
        raise click.BadParameter(str(exc), param_hint="--note") from None
    cfg = settings(db_url=db_url)
    if api_url is not None:
        done = ServiceAPI(cfg, api_url, token_setting="audit_api_token").post(
            f"/v1/audit/flags/{quote(flag, safe='')}/ack", {"note": checked}
        )
    else:
        db = open_database(cfg.db_url)
        try:
            db.migrate(COMPONENT, list(MIGRATIONS))
            done = queries.acknowledge(db, flag, checked, _this_user(), datetime.now(UTC))
        except queries.UnknownFlag:
            raise click.ClickException(f"no flag {flag} in {redact_url(cfg.db_url)}") from None
        finally:
            db.close()
    click.echo(f"acknowledged {flag} by {done['by']} ({done['by_kind']}) at {done['at']}")


def _token(cfg: Settings) -> str:
    """The setting whose token goes to the audit's API: its named token, else the read
    APIs' shared one (which only reads)."""
    return "audit_api_token" if cfg.audit_api_token is not None else "consumer_api_token"


def _this_user() -> Principal:
    """Who runs the command, as the operating system knows them (never a typed name)."""
    user = getpass.getuser()
    return Principal(user, LOCAL, f"{user}@{socket.gethostname()}", frozenset(PERMISSIONS))


audit.add_command(
    token_group("audit", "read, ack, reopen", "audit's read API and acknowledgements")
)


COMMANDS = [audit]
