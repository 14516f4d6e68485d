"""``tillstream report``: one store's business day from the analytics store, for people,
with the sales audit's findings for that store-day: its status, every open flag counted by
kind, the money at stake, and the payment findings in full.

The reconciliation of sales and payments is the audit's (one owner, issue 14): the report
reads its findings through the audit's read API (``GET /v1/audit/days/{store}/{day}``,
``--audit-api``) or its database (``--audit-db``), as ``tillstream audit`` does. Services do
not read each other; the command line, above them both, joins what they say.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import click

from tillstream.cli.common import settings
from tillstream.cli.service_read import API_OPTION, ServiceAPI, open_database, read
from tillstream.core.days import parse_day
from tillstream.core.settings import Settings, env_name

PAYMENT_KINDS = ("payment_mismatch", "payment_without_sale")
"""The audit's flags that say whether payments add up to their sales: listed one by one."""

BAR_WIDTH = 30
_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: Decimal, largest: Decimal, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of ``value`` against ``largest``, in eighths of a character."""
    if largest <= 0 or value <= 0:
        return ""
    eighths = int(value / largest * width * 8)
    return "█" * (eighths // 8) + _EIGHTHS[eighths % 8].strip()


def _money(amounts: dict[str, Decimal]) -> str:
    return ", ".join(f"{a:.2f} {c}" for c, a in sorted(amounts.items())) or "0.00"


def _day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return parse_day(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("--store", "store_id", required=True, help="Store id.")
@click.option(
    "--day",
    callback=_day,
    metavar="YYYY-MM-DD",
    help="The store's business day, YYYY-MM-DD. [default: today (UTC)]",
)
@click.option(
    "--db",
    "db_url",
    help="The analytics database URL. [env: TILLSTREAM_DB_URL; default: "
    "duckdb:///analytics.duckdb]",
)
@API_OPTION
@click.option(
    "--audit-api",
    "audit_api",
    metavar="URL",
    help="The sales audit's read API (http://HOST:PORT), for the store-day's findings. "
    "[env: TILLSTREAM_AUDIT_API_URL]",
)
@click.option(
    "--audit-db",
    "audit_db",
    metavar="URL",
    help="The sales audit's database, when no --audit-api. [env: TILLSTREAM_AUDIT_DB_URL]",
)
def report(
    store_id: str,
    day: date | None,
    db_url: str | None,
    api_url: str | None,
    audit_api: str | None,
    audit_db: str | None,
) -> None:
    """Print a store's business day: totals, sales per local hour, tenders, top SKUs, and
    the sales audit's findings: the store-day's status, its open flags by kind, the money
    at stake, and the payments that do not add up to their sale.

    Works while the analytics service runs: a DuckDB file the service holds is read through
    the service's API (GET /v1/report). The findings come from the sales audit
    (--audit-api or --audit-db); without it the report says so and prints the rest.
    """
    from tillstream_consumers.analytics import Analytics
    from tillstream_consumers.analytics.report import DailySummary, daily_summary
    from tillstream_consumers.runtime.db import Database

    cfg = settings(db_url=db_url)
    wanted = (day or datetime.now(UTC).date()).isoformat()
    url = cfg.db_url if "db_url" in cfg.model_fields_set else str(Analytics.default_db_url)

    def direct(db: Database) -> DailySummary:
        try:
            return daily_summary(db, store_id, wanted)
        except Exception as exc:  # no analytics tables: the consumer never ran on this database
            raise click.ClickException(f"cannot read the analytics store: {exc}") from None

    def remote(api: ServiceAPI) -> DailySummary:
        return DailySummary.from_json(api.get("/v1/report", store=store_id, day=wanted))

    s = read(cfg, url, api_url, direct, remote, what="analytics")

    click.echo(f"Store {s.store_id} — business day {s.day} (store-local hours)")
    click.echo("")
    click.echo(f"  transactions   {s.transactions}")
    click.echo(f"  net sales      {_money(s.net)}")
    click.echo(f"  units          {s.units.normalize():f}")
    click.echo(f"  avg basket     {_money(s.average_basket)}, {s.units_per_basket:.2f} units")
    click.echo(f"  returns rate   {s.returns_rate * 100:.1f}% of lines")
    click.echo("")
    click.echo("Sales per hour")
    largest = max((h.net for h in s.hours), default=Decimal(0))
    for h in s.hours:
        click.echo(
            f"  {h.hour_start[11:16]} {h.net:>10.2f} {h.currency} {h.transactions:>4} tx "
            f"{bar(h.net, largest)}"
        )
    if not s.hours:
        click.echo("  (no sales)")
    click.echo("")
    click.echo("Tender mix")
    for t in s.tenders:
        click.echo(f"  {t.method:<14} {t.amount:>10.2f} {t.currency} {t.payments:>4} payment(s)")
    if not s.tenders:
        click.echo("  (no payments)")
    click.echo("")
    click.echo("Top SKUs")
    for n, sku in enumerate(s.top_skus, start=1):
        click.echo(
            f"  {n}. {sku.sku:<20} {sku.units.normalize():>8f} units "
            f"{sku.net:>10.2f} {sku.currency}"
        )
    if not s.top_skus:
        click.echo("  (none)")
    click.echo("")
    _print_audit_findings(cfg, store_id, wanted, audit_api, audit_db)


def _print_audit_findings(
    cfg: Settings, store_id: str, day: str, api_url: str | None, db_url: str | None
) -> None:
    """The audit's open flags of the store-day (all of them, counted by kind, and the payment
    ones in full) with its money at stake, or why they cannot be shown."""
    from tillstream_consumers.audit.at_stake import describe

    api_url = api_url or cfg.audit_api_url
    db_url = db_url or cfg.audit_db_url
    try:
        found = audit_store_day(cfg, store_id, day, api_url, db_url)
    except click.ClickException as exc:
        click.echo(f"Sales audit: not shown: {exc.message}")
        return
    if found is None:
        click.echo(f"Sales audit: the audit has no store-day {store_id} {day} yet")
        return
    open_flags = [f for f in found.get("flags", []) if f["open"]]
    kinds: dict[str, int] = {}
    for f in open_flags:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    acked = sum(1 for f in open_flags if f.get("acknowledgements"))
    status = found.get("status", "?")
    by_kind = ", ".join(f"{kind} {n}" for kind, n in kinds.items())
    click.echo(
        f"Sales audit (store-day {status}): {len(open_flags)} open flag(s)"
        + (f": {by_kind}; {acked} acknowledged" if open_flags else "")
    )
    if "at_stake" in found:  # absent from an audit service before money at stake
        click.echo(f"  at stake: {describe(found['at_stake'])}")
    for f in open_flags:
        if f["kind"] in PAYMENT_KINDS:
            done = " (acknowledged)" if f.get("acknowledgements") else ""
            click.echo(f"  {f['kind']:<21} {f['message']}{done}")
    pending = len(found.get("pending_payments") or [])
    if pending:
        click.echo(f"  {pending} sale(s) whose payments are not due yet (till not settled)")


def audit_store_day(
    cfg: Settings, store_id: str, day: str, api_url: str | None, db_url: str | None
) -> dict[str, Any] | None:
    """The audit's detail of a store-day (``GET /v1/audit/days/{store}/{day}``), from its
    read API or its database; a ClickException says why it cannot be read."""
    if api_url is None and db_url is None:
        raise click.ClickException(
            f"no sales audit to ask: pass --audit-api http://HOST:PORT (or set "
            f"{env_name('audit_api_url')}), or --audit-db URL"
        )
    if api_url is not None:
        try:
            found: dict[str, Any] = ServiceAPI(cfg, api_url).get(f"/v1/audit/days/{store_id}/{day}")
        except click.ClickException as exc:
            if "has no /v1/audit/days" in exc.message:  # the audit's 404: no such store-day
                return None
            raise click.ClickException(f"the sales audit is not reachable: {exc.message}") from None
        return found
    from tillstream_consumers.audit import queries

    db = open_database(str(db_url))
    try:
        return queries.store_day(db, store_id, date.fromisoformat(day), datetime.now(UTC), cfg)
    except Exception as exc:  # no audit tables: not the audit's database
        raise click.ClickException(f"cannot read the sales audit at that database: {exc}") from None
    finally:
        db.close()


COMMANDS = [report]
