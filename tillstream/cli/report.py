"""``tillstream report``: one store's day from the analytics store, for people."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import click

from tillstream.cli.common import settings
from tillstream.cli.service_read import API_OPTION, ServiceAPI, read

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


@click.command()
@click.option("--store", "store_id", required=True, help="Store id.")
@click.option(
    "--day",
    type=click.DateTime(["%Y-%m-%d"]),
    help="UTC day, YYYY-MM-DD. [default: today]",
)
@click.option(
    "--db",
    "db_url",
    help="The analytics database URL. [env: TILLSTREAM_DB_URL; default: "
    "duckdb:///analytics.duckdb]",
)
@API_OPTION
def report(store_id: str, day: datetime | None, db_url: str | None, api_url: str | None) -> None:
    """Print a store's daily summary: totals, sales per hour, tenders, top SKUs and
    reconciliation flags.

    Works while the analytics service runs: a DuckDB file the service holds is read through
    the service's API (GET /v1/report).
    """
    from tillstream_consumers.analytics import Analytics
    from tillstream_consumers.analytics.report import DailySummary, daily_summary
    from tillstream_consumers.runtime.db import Database

    cfg = settings(db_url=db_url)
    wanted = (day or datetime.now(UTC)).strftime("%Y-%m-%d")
    url = cfg.db_url if "db_url" in cfg.model_fields_set else str(Analytics.default_db_url)

    def direct(db: Database) -> DailySummary:
        try:
            return daily_summary(db, store_id, wanted)
        except Exception as exc:  # no analytics tables: the consumer never ran on this database
            raise click.ClickException(f"cannot read the analytics store: {exc}") from None

    def remote(api: ServiceAPI) -> DailySummary:
        return DailySummary.from_json(api.get("/v1/report", store=store_id, day=wanted))

    s = read(cfg, url, api_url, direct, remote, what="analytics")

    click.echo(f"Store {s.store_id} — {s.day} (UTC)")
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
    click.echo(f"Reconciliation: {len(s.flags)} flag(s)")
    for f in s.flags:
        expected = "-" if f.expected is None else f"{f.expected:.2f}"
        click.echo(
            f"  {f.kind:<21} sale {f.sale_event_id} at {f.event_at[11:19]}: "
            f"expected {expected}, paid {f.paid:.2f}"
        )


COMMANDS = [report]
