"""Reading a consumer's data from the CLI, also while its service runs.

SQLite (WAL) and PostgreSQL let a command read beside the running service. A DuckDB file is
opened by one process at a time (DuckDB refuses even a read-only open while the service
holds it), so a command that finds the file held asks the service instead, through its read
API on ``TILLSTREAM_CONSUMER_LISTEN`` (or ``--api URL``), sending
``TILLSTREAM_CONSUMER_API_TOKEN`` as a bearer token when it is set.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import click
import httpx

from tillstream.core.settings import Settings, env_name, split_host_port
from tillstream_consumers.runtime.db import Database, DatabaseError, redact_url

T = TypeVar("T")
API_TIMEOUT = 30.0
_HELD = re.compile(r"Conflicting lock is held in .*\(PID (\d+)\)")

API_OPTION = click.option(
    "--api",
    "api_url",
    metavar="URL",
    help="Read through the running service's HTTP API at URL (http://HOST:PORT) instead of "
    "its database. [default: the database; the API at TILLSTREAM_CONSUMER_LISTEN when the "
    "service holds a DuckDB file]",
)


class HeldByService(Exception):
    """Another process (the running service) holds the database file."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(f"pid {pid}" if pid else "another process")
        self.pid = pid


def open_database(url: str) -> Database:
    """The database at ``url``; :class:`HeldByService` if a running service holds the file."""
    try:
        return Database(url)
    except Exception as exc:  # DatabaseError, or a driver's own (a server away)
        held = _HELD.search(str(exc))
        if held is not None:
            raise HeldByService(int(held.group(1))) from None
        if isinstance(exc, DatabaseError):
            raise click.ClickException(str(exc)) from None
        raise click.ClickException(f"cannot open {redact_url(url)}: {exc}") from None


def held_elsewhere(url: str, held: HeldByService, why: str) -> click.ClickException:
    """The refusal when a file is held and no read API can stand in (``why`` says so)."""
    return click.ClickException(
        f"{redact_url(url)} is held by another process ({held}), probably its service: DuckDB "
        f"lets one process open a file, and {why}. Stop the service first, or run it on "
        "SQLite or PostgreSQL, which can be read while it works."
    )


def read(
    cfg: Settings,
    db_url: str,
    api_url: str | None,
    direct: Callable[[Database], T],
    remote: Callable[[ServiceAPI], T],
    *,
    what: str,
    token_setting: str = "consumer_api_token",
) -> T:
    """``direct(db)`` on the database, or ``remote(api)`` through the service's read API
    when ``api_url`` is given or the service holds the database file."""
    if api_url is None:
        try:
            db = open_database(db_url)
        except HeldByService as held:
            api = ServiceAPI(cfg, None, token_setting)
            try:
                return remote(api)
            except click.ClickException as exc:
                raise click.ClickException(
                    f"{redact_url(db_url)} is held by another process ({held}), probably the "
                    f"running {what} service. DuckDB lets one process open a file, so this "
                    f"asks the service's read API instead, but {exc.message}. Pass --api "
                    f"http://HOST:PORT (the service's {env_name('consumer_listen')})."
                ) from None
        try:
            return direct(db)
        finally:
            db.close()
    return remote(ServiceAPI(cfg, api_url, token_setting))


class ServiceAPI:
    """Requests to a consumer service's API: reads, and the few writes a service takes (an
    audit flag's acknowledgement)."""

    def __init__(
        self, cfg: Settings, url: str | None, token_setting: str = "consumer_api_token"
    ) -> None:
        if url is None:  # the service's own listen address; a wildcard means this host
            host, port = split_host_port(cfg.consumer_listen)
            host = "127.0.0.1" if host in ("0.0.0.0", "") else host
            host = "::1" if host == "::" else host
            url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self.url = url.rstrip("/")
        token = getattr(cfg, token_setting)
        self._headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        self._token_env = env_name(token_setting)

    def get(self, path: str, **params: str | None) -> Any:
        """The JSON answer of ``GET path``; a ClickException says what went wrong."""
        query = {k: v for k, v in params.items() if v is not None}
        try:
            response = httpx.get(
                self.url + path, params=query, headers=self._headers, timeout=API_TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise click.ClickException(f"no service answers at {self.url} ({exc})") from None
        if response.status_code in (401, 403):
            raise click.ClickException(
                f"the service at {self.url} refused the request (HTTP {response.status_code}): "
                f"set {self._token_env} to its read-API token"
            )
        if response.status_code == 404:
            raise click.ClickException(
                f"the service at {self.url} has no {path}: is it the right consumer?"
            )
        if response.status_code != 200:
            raise click.ClickException(
                f"the service at {self.url} answered HTTP {response.status_code} to {path}"
            )
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """The JSON answer of ``POST path`` with ``body`` as JSON; a ClickException gives
        the service's own reason for a refusal (``{"error": ...}``), or what went wrong."""
        try:
            response = httpx.post(
                self.url + path, json=body, headers=self._headers, timeout=API_TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise click.ClickException(f"no service answers at {self.url} ({exc})") from None
        if response.status_code in (401, 403):
            raise click.ClickException(
                f"the service at {self.url} refused the request (HTTP {response.status_code}): "
                f"{self._error_of(response)}; set {self._token_env} to a token that may"
            )
        if not 200 <= response.status_code < 300:
            reason = self._error_of(response)
            if reason:
                raise click.ClickException(str(reason))
            raise click.ClickException(
                f"the service at {self.url} answered HTTP {response.status_code} to {path}"
            )
        return response.json()

    @staticmethod
    def _error_of(response: httpx.Response) -> str:
        """The service's own reason for a refusal (``{"error": ...}``), if it gave one."""
        try:
            answer = response.json()
        except ValueError:
            return ""
        return str(answer.get("error") or "") if isinstance(answer, dict) else ""
