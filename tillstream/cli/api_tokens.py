"""``tillstream audit token`` and ``tillstream fleet token``: the named API tokens of a
service people sign in to, for scripts (made, listed, revoked in the service's database;
``tillstream_consumers/runtime/api_tokens.py``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import click

from tillstream.cli.common import settings
from tillstream.cli.service_read import open_database
from tillstream_consumers.runtime import api_tokens
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.state import COMPONENT as RUNTIME
from tillstream_consumers.runtime.state import migrations as runtime_migrations

T = TypeVar("T")


def token_group(service: str, scopes: str, what: str) -> click.Group:
    """The ``token`` commands of ``service`` (``audit``, ``fleet``), whose tokens may have
    ``scopes`` (the help's words) to do ``what``."""
    db_option = click.option(
        "--db",
        "db_url",
        metavar="URL",
        help=f"Database of the {service} service. [default: TILLSTREAM_DB_URL]",
    )

    @click.group("token", help=f"Named API tokens of the {what}, for scripts.")
    def token() -> None:
        pass

    @token.command("create")
    @click.argument("name")
    @click.option(
        "--scope",
        "scope",
        default="read",
        show_default=True,
        help=f"What it may do, comma-separated: {scopes}.",
    )
    @db_option
    def create(name: str, scope: str, db_url: str | None) -> None:
        """Make token NAME and print it, once: only its hash is kept."""
        wanted = [s.strip() for s in scope.split(",") if s.strip()]
        made = _on_tokens(db_url, lambda db: api_tokens.create(db, name, wanted, _now()))
        click.echo(made)
        click.echo(
            f"token {name} ({', '.join(wanted)}): shown once; send it as 'Authorization: "
            f"Bearer <token>'. A running {service} service accepts it at once.",
            err=True,
        )

    @token.command("list")
    @db_option
    def listed(db_url: str | None) -> None:
        """Every token: name, scopes, made, revoked (never the token itself)."""
        for t in _on_tokens(db_url, api_tokens.listed):
            revoked = f"revoked {t.revoked_at}" if t.revoked_at else "active"
            click.echo(f"{t.name}  {','.join(t.scopes)}  made {t.created_at}  {revoked}")

    @token.command("revoke")
    @click.argument("name")
    @db_option
    def revoke(name: str, db_url: str | None) -> None:
        """Revoke token NAME: refused from now on (its trail stays)."""
        _on_tokens(db_url, lambda db: api_tokens.revoke(db, name, _now()))
        click.echo(f"token {name} revoked")

    return token


def _now() -> datetime:
    return datetime.now(UTC)


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
