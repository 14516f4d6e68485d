"""``tillstream stock``: the ERP inventory's stock on hand, for people and scripts."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from tillstream.cli.common import settings
from tillstream.cli.service_read import (
    API_OPTION,
    ServiceAPI,
    read,
)
from tillstream_consumers.erp.queries import StockLevel, stock_levels
from tillstream_consumers.erp.tables import COMPONENT, MIGRATIONS
from tillstream_consumers.runtime.db import Database

_DB_OPTION = click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="Database of the ERP service. [default: TILLSTREAM_DB_URL]",
)


@click.command()
@click.argument("store", required=False)
@click.argument("sku", required=False)
@_DB_OPTION
@API_OPTION
@click.option("--json", "as_json", is_flag=True, help="A JSON array (quantities as strings).")
def stock(
    store: str | None, sku: str | None, db_url: str | None, api_url: str | None, as_json: bool
) -> None:
    """Print stock on hand per store and SKU (of STORE, and of SKU in it, if given).

    Works while the ERP service runs: a DuckDB file the service holds is read through the
    service's API (GET /v1/stock).
    """
    cfg = settings(db_url=db_url)

    def direct(db: Database) -> list[StockLevel]:
        db.migrate(COMPONENT, list(MIGRATIONS))
        return stock_levels(db, store, sku)

    def remote(api: ServiceAPI) -> list[StockLevel]:
        return [StockLevel.from_json(x) for x in api.get("/v1/stock", store=store, sku=sku)]

    levels = read(cfg, cfg.db_url, api_url, direct, remote, what="ERP")
    if as_json:
        click.echo(json.dumps([level.as_json() for level in levels], indent=2))
        return
    table = Table("Store", "SKU", "On hand", "Description", "Updated")
    for level in levels:
        table.add_row(
            level.store_id,
            level.sku,
            str(level.on_hand),
            level.description or "",
            level.updated_at,
        )
    console = Console()
    if levels:
        console.print(table)
    else:
        console.print("no stock recorded" + (f" for {store}" if store else ""))


COMMANDS = [stock]
