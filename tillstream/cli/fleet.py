"""``tillstream fleet``: the store estate as the fleet service sees it, and head office's
decisions for it (``set``, ``apply``, ``rotate-token``), published to
``tillstream.estate-desired`` (see ``docs/fleet.md``)."""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
from aiokafka.errors import KafkaError
from pydantic import TypeAdapter, ValidationError

from tillstream.cli.api_tokens import token_group
from tillstream.cli.common import run, settings
from tillstream.cli.service_read import API_OPTION, ServiceAPI, read
from tillstream.cli.tables import Output
from tillstream.core.codec import AvroCodec, CodecError
from tillstream.core.compacted import TopicReadError
from tillstream.core.estate import EDGE, TargetError, check_device_name, check_till_id
from tillstream.core.registry import registry_from_settings
from tillstream.core.settings import Settings
from tillstream.fleet.desired import (
    Change,
    DesiredError,
    Problems,
    clear_change,
    device_change,
    edge_change,
    till_change,
)
from tillstream.fleet.estate_file import read_estate
from tillstream.fleet.publishing import Planned, decide
from tillstream.fleet.till_tokens import new_token, rotation
from tillstream.fleet.topic import read_desired
from tillstream_consumers.fleet import queries
from tillstream_consumers.fleet.flags import Rules
from tillstream_consumers.fleet.tables import COMPONENT, MIGRATIONS
from tillstream_consumers.fleet.times import span
from tillstream_consumers.runtime.db import Database

T = TypeVar("T")
_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)
_DRY_RUN = click.option(
    "--dry-run", is_flag=True, help="Say what would be published; publish nothing."
)


@click.group(invoke_without_command=True)
@click.option("--store", metavar="STORE", help="One store: its edge, tills, devices and flags.")
@click.option("--json", "as_json", is_flag=True, help="JSON (times store-local with offset).")
@click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="Database of the fleet service. [default: TILLSTREAM_DB_URL]",
)
@API_OPTION
@click.pass_context
def fleet(
    ctx: click.Context, store: str | None, as_json: bool, db_url: str | None, api_url: str | None
) -> None:
    """The store estate: every store's edge (up, silent), its last report's age, outbox
    backlog and clock skew, devices down, drift from head office's desired state and open
    flags; with --store, that store's edge, tills and devices, desired and reported side by
    side, and its flags with what to do next.

    Piped or redirected, the tables are plain lines as wide as their content.
    """
    if ctx.invoked_subcommand is not None:
        return
    cfg = settings(db_url=db_url)
    rules = Rules.of(cfg)
    now = datetime.now(UTC)
    token = "fleet_api_token" if cfg.fleet_api_token is not None else "consumer_api_token"
    if store is not None:
        one = store

        def detail(db: Database) -> dict[str, Any] | None:
            db.migrate(COMPONENT, list(MIGRATIONS))
            return queries.store(db, one, now, rules)

        def detail_remote(api: ServiceAPI) -> dict[str, Any] | None:
            found: dict[str, Any] = api.get(f"/v1/fleet/stores/{one}")
            return found

        found = read(cfg, cfg.db_url, api_url, detail, detail_remote, what="fleet",
                     token_setting=token)  # fmt: skip
        if found is None:
            raise click.ClickException(f"the fleet service knows no store {store}")
        if as_json:
            click.echo(json.dumps(found, indent=2))
        else:
            _print_store(found)
        return

    def listing(db: Database) -> list[dict[str, Any]]:
        db.migrate(COMPONENT, list(MIGRATIONS))
        return queries.estate(db, now, rules)

    def listing_remote(api: ServiceAPI) -> list[dict[str, Any]]:
        stores: list[dict[str, Any]] = api.get("/v1/fleet/stores")
        return stores

    stores = read(cfg, cfg.db_url, api_url, listing, listing_remote, what="fleet",
                  token_setting=token)  # fmt: skip
    if as_json:
        click.echo(json.dumps(stores, indent=2))
        return
    out = Output()
    if not stores:
        out.line("no store has reported to the fleet service yet")
        return
    out.table(
        ["Store", "Edge", "Last report", "Outbox", "Skew", "Devices down", "Tills", "Drift",
         "Open flags"],
        [
            [
                s["store_id"],
                s["state"],
                _ago(s["heartbeat_age_seconds"]),
                "" if s["outbox_depth"] is None else str(s["outbox_depth"]),
                "" if s["clock_skew_seconds"] is None else span(s["clock_skew_seconds"]),
                f"{s['devices_down']}/{s['devices']}",
                str(s["tills"]),
                str(s["drift"]),
                ", ".join(f"{k} {n}" for k, n in s["open_flags"].items()) or "-",
            ]
            for s in stores
        ],
        title=f"Store estate: {len(stores)} stores",
        whole={"Store", "Edge"},
        words={"Open flags"},
    )  # fmt: skip


def _ago(seconds: int | None) -> str:
    return "never" if seconds is None else f"{span(seconds)} ago"


def _print_store(s: dict[str, Any]) -> None:
    out = Output()
    out.line(
        f"{s['store_id']}: edge {s['state']}"
        + (
            f", last report {s['last_report_at']} ({_ago(s['heartbeat_age_seconds'])}, every "
            f"{s['heartbeat_seconds']} s), outbox {s['outbox_depth']}, clock skew "
            f"{span(s['clock_skew_seconds'])}"
            if s["edge"]
            else ""
        )
    )
    edge = s["edge"]
    if edge:
        want = (edge.get("desired") or {}).get("settings") or {}
        out.table(
            ["Setting", "Head office wants", "In force"],
            [
                ["log level", want.get("log_level") or "the edge's own", edge["log_level"]],
                ["max event age", _span_or_own(want.get("max_event_age_seconds")),
                 span(edge["max_event_age_seconds"])],
                ["max future", _span_or_own(want.get("max_future_seconds")),
                 span(edge["max_future_seconds"])],
            ],
            title="Edge",
        )  # fmt: skip
    out.table(
        ["Till", "At the edge", "Head office wants", "Last seen", "Software", "Refused"],
        [
            [t["till_id"], t["lifecycle"] or "not reported", _wanted(t["desired"]),
             t["last_seen_at"] or "never", t["software"] or "", str(t["refused_while_suspended"])]
            for t in s["tills"]
        ],
        title="Tills",
        whole={"Till", "At the edge"},
    )  # fmt: skip
    out.table(
        ["Device", "Protocol", "Port", "Connected", "Since", "Head office wants"],
        [
            [
                d["device_id"],
                d.get("protocol") or "",
                d.get("port") or "",
                {None: "not reported", True: "connected", False: "disconnected"}[d["connected"]],
                (d.get("connected_since") if d["connected"] else d.get("disconnected_since")) or "",
                _wanted(d["desired"]),
            ]
            for d in s["devices"]
        ],
        title="Devices",
        whole={"Device", "Connected"},
    )
    flags = s["flags"]
    if flags:
        out.table(
            ["Kind", "Subject", "What", "Since", "State"],
            [
                [f["kind"], f["subject"], f["message"], f["first_seen_at"],
                 "open" if f["open"] else f"resolved {f['resolved_at']}"]
                for f in flags
            ],
            title="Flags",
            whole={"Kind", "State"},
        )  # fmt: skip
        for kind, step in {f["kind"]: f["next_step"] for f in flags if f["open"]}.items():
            out.line(f"Next, {kind}: {step}")
    else:
        out.line("No flags.")


def _span_or_own(seconds: int | None) -> str:
    return "the edge's own" if seconds is None else span(seconds)


def _wanted(desired: dict[str, Any] | None) -> str:
    """Head office's record beside what the edge applied of it, in one cell."""
    if desired is None:
        return "the store's own"
    if desired["cleared"]:
        return f"the store's own (cleared after v{desired['version']})"
    settings_ = desired["settings"] or {}
    if "lifecycle" in settings_:
        what = settings_["lifecycle"] + (", token set" if settings_.get("token_set") else "")
    else:
        what = ", ".join(f"{k}={v}" for k, v in settings_.items())
    applied = desired["applied"]
    if applied is None or applied["version"] < desired["version"]:
        state = "not applied yet"
    elif applied["applied"]:
        state = "applied"
    else:
        state = f"refused: {applied['error'] or ''}"
    return f"{what} (v{desired['version']}, {state})"


# -- decisions ---------------------------------------------------------------------------


@fleet.command("set")
@click.option("--store", required=True, metavar="STORE", help="The store.")
@click.option("--till", metavar="TILL", help="A till: with --lifecycle, or --clear.")
@click.option(
    "--lifecycle",
    type=click.Choice(["active", "suspended", "decommissioned"], case_sensitive=False),
    help="The till's lifecycle: suspended refuses its requests at the edge (lost, stolen).",
)
@click.option("--device", metavar="NAME", help="A serial device: its whole table, or --port.")
@click.option("--settings-json", metavar="JSON", help="The device's table as a JSON object.")
@click.option("--port", metavar="PORT", help="The device's port (its other settings kept).")
@click.option("--edge", is_flag=True, help="The edge: --log-level, --max-event-age, --max-future.")
@click.option("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR.")
@click.option("--max-event-age", metavar="DURATION", help="Seconds or ISO 8601 (P7D).")
@click.option("--max-future", metavar="DURATION", help="Seconds or ISO 8601 (PT1H).")
@click.option(
    "--clear", is_flag=True, help="Give the target back to the store's own configuration."
)
@_DRY_RUN
def set_(
    store: str,
    till: str | None,
    lifecycle: str | None,
    device: str | None,
    settings_json: str | None,
    port: str | None,
    edge: bool,
    log_level: str | None,
    max_event_age: str | None,
    max_future: str | None,
    clear: bool,
    dry_run: bool,
) -> None:
    """Decide one thing of a store: a till, a device or the edge.

    A till's lifecycle, a device's settings or the edge's, or --clear it (back to the
    store's own). Published to tillstream.estate-desired only if it changes something
    (version: the target's last plus one), as this machine's user; each edge applies its
    store's and reports what it applied."""
    named = [n for n, given in (("--till", till), ("--device", device), ("--edge", edge)) if given]
    if len(named) != 1:
        raise click.UsageError("name one target: --till TILL, --device NAME or --edge")
    cfg = settings()
    problems = Problems()
    change: Change | None
    if clear:
        extra = [lifecycle, settings_json, port, log_level, max_event_age, max_future]
        if any(v is not None for v in extra):
            raise click.UsageError("--clear takes no settings: it tombstones the target")
        change = clear_change(store, _target(till, device), problems)
    elif till is not None:
        if lifecycle is None:
            raise click.UsageError("--till needs --lifecycle (or --clear)")
        change = till_change(store, till, {"lifecycle": lifecycle}, problems, replace=False)
    elif device is not None:
        table = _device_table(cfg, store, device, settings_json, port)
        change = device_change(store, device, table, problems)
    else:
        fields = {"log_level": log_level, "max_event_age": max_event_age,
                  "max_future": max_future}  # fmt: skip
        given = {k: v for k, v in fields.items() if v is not None}
        change = edge_change(store, given, problems, replace=False)
    _refuse(problems)
    assert change is not None
    _report(_decide(cfg, [change], dry_run), dry_run)


@fleet.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_DRY_RUN
def apply(file: Path, dry_run: bool) -> None:
    """Publish what the estate file FILE changes.

    FILE is TOML: [stores.<id>.edge], [stores.<id>.tills.<till>], [stores.<id>.devices.<name>]
    (docs/fleet.md). It is checked whole first: any problem (named by store, target and
    field) and nothing is published. Only the targets whose desired state changes are
    published, each at its last version plus one, as this machine's user."""
    try:
        changes = read_estate(file)
    except DesiredError as exc:
        _refuse(Problems(exc.problems))
    _report(_decide(settings(), changes, dry_run), dry_run)


@fleet.command("rotate-token")
@click.option("--store", required=True, metavar="STORE", help="The store.")
@click.option("--till", required=True, metavar="TILL", help="The till.")
@click.option(
    "--overlap",
    default="PT0S",
    show_default=True,
    metavar="DURATION",
    help="How long the till's token before this one is still taken (ISO 8601, or seconds).",
)
def rotate_token(store: str, till: str, overlap: str) -> None:
    """Give TILL a new random token, printed once.

    Only its SHA-256 is published, with until when the token before it is still taken
    (--overlap). Give the token to the till; its lifecycle stays what head office set."""
    try:
        span_ = _DURATION.validate_python(int(overlap) if overlap.isdigit() else overlap)
    except (ValidationError, ValueError):
        raise click.BadParameter("seconds or ISO 8601 (PT1H)", param_hint="--overlap") from None
    if span_ < timedelta(0):
        raise click.BadParameter("not negative", param_hint="--overlap")
    problems = Problems()
    probe = till_change(store, till, {"lifecycle": "active"}, problems, replace=False)
    _refuse(problems)
    assert probe is not None
    cfg = settings()
    codec = _codec(cfg)
    token = new_token()

    async def rotate() -> list[Planned]:
        state = await read_desired(cfg, codec, [probe.key])
        held = state.current(probe.key)
        change = rotation(store, probe.target, token, held.payload if held else None,
                          datetime.now(UTC), span_)  # fmt: skip
        return await decide(cfg, codec, [change], _this_user(), whole_topic=False)

    planned = _run(cfg, rotate())
    click.echo(token)
    until = f"; the token before it is taken for {span(span_.total_seconds())}" if span_ else ""
    click.echo(
        f"{probe.target} of {store}: version {planned[0].version}, the new token's SHA-256 "
        f"published{until}. The token is shown once: give it to the till now.",
        err=True,
    )


fleet.add_command(token_group("fleet", "read, manage", "fleet service's read API and till actions"))


def _target(till: str | None, device: str | None) -> str:
    try:
        if till is not None:
            return f"till/{check_till_id(till)}"
        if device is not None:
            return f"device/{check_device_name(device)}"
    except TargetError as exc:
        raise click.BadParameter(str(exc)) from None
    return EDGE


def _device_table(
    cfg: Settings, store: str, name: str, settings_json: str | None, port: str | None
) -> Any:
    """The device's whole table: --settings-json (with --port over it), or head office's
    current table with --port changed."""
    if settings_json is not None:
        try:
            table = json.loads(settings_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--settings-json") from None
        if not isinstance(table, dict):
            raise click.BadParameter("a JSON object", param_hint="--settings-json")
    elif port is not None:
        key = (store, f"device/{name}")
        state = _run(cfg, read_desired(cfg, _codec(cfg), [key]))
        held = state.current(key)
        device = (held.payload or {}).get("device") if held else None
        if not device:
            raise click.UsageError(
                f"head office has no settings for device {name} of {store}: give its whole "
                "table with --settings-json"
            )
        table = json.loads(device["settings_json"])
    else:
        raise click.UsageError("--device needs --settings-json or --port (or --clear)")
    if port is not None:
        table["port"] = port
    return table


def _decide(cfg: Settings, changes: Sequence[Change], dry_run: bool) -> list[Planned]:
    return _run(cfg, decide(cfg, _codec(cfg), changes, _this_user(), dry_run=dry_run))


def _run(cfg: Settings, coro: Coroutine[Any, Any, T]) -> T:
    try:
        return run(coro)
    except (KafkaError, TopicReadError, CodecError) as exc:
        raise click.ClickException(
            f"cannot read or publish tillstream.estate-desired on "
            f"{cfg.kafka_bootstrap_servers}: {exc}"
        ) from None


def _codec(cfg: Settings) -> AvroCodec:
    return AvroCodec(registry_from_settings(cfg))


def _this_user() -> str:
    """Who runs the command, as the operating system knows them (never a typed name)."""
    return f"{getpass.getuser()}@{socket.gethostname()} (local)"


def _refuse(problems: Problems) -> None:
    if problems.found:
        lines = "\n".join(f"  {p}" for p in problems.found)
        raise click.ClickException(f"nothing published; {len(problems.found)} problem(s):\n{lines}")


def _report(planned: list[Planned], dry_run: bool) -> None:
    verb = "would publish" if dry_run else "published"
    for p in planned:
        click.echo(f"{verb} {p.store_id} {p.target}: {p.what}")
    if not planned:
        click.echo("nothing to publish: head office's desired state already says this")


COMMANDS = [fleet]
