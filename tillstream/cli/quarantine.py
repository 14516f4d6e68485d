"""``tillstream edge quarantine``: events Kafka refused for good, kept in the store's outbox.

They were taken from the queue so the store's later events keep flowing (see
``tillstream_edge.forwarder``). ``show`` lists or exports them; ``retry`` puts them back in the
queue, in their original order, once the cause is fixed (a topic limit raised, an ACL
granted). A running edge service publishes them within seconds; the command works beside it.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from tillstream.cli.common import run, settings
from tillstream_edge.limits import record_size
from tillstream_edge.outbox import Outbox, QuarantinedEvent

_OUTBOX = click.option(
    "--outbox",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Outbox file. [env: TILLSTREAM_EDGE_OUTBOX; default: outbox.db]",
)


@click.group()
def quarantine() -> None:
    """Events Kafka refused for good (too large, invalid, not authorized)."""


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _as_json(event: QuarantinedEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "type": event.event_type,
        "topic": event.topic,
        "reason": event.reason,
        "bytes": record_size(event.key, event.value),
        "channel": event.channel,
        "accepted_at": _when(event.accepted_at),
        "quarantined_at": _when(event.quarantined_at),
        "key": event.key.decode("utf-8", "replace"),
        "value_base64": base64.b64encode(event.value).decode("ascii"),
    }


@quarantine.command("show")
@_OUTBOX
@click.option("--json", "as_json", is_flag=True, help="Export: one JSON object per line.")
def show(outbox: Path | None, as_json: bool) -> None:
    """List quarantined events, oldest first: id, type, topic, reason, size, when."""
    events = run(_read(_outbox_path(outbox)))
    for event in events:
        if as_json:
            click.echo(json.dumps(_as_json(event)))
        else:
            click.echo(
                f"{event.event_id}  {event.event_type:<14} {event.topic:<28} "
                f"{record_size(event.key, event.value):>9} B  {_when(event.quarantined_at)}  "
                f"{event.reason}"
            )
    if not as_json:
        click.echo(f"-- {len(events)} quarantined event(s)", err=True)


@quarantine.command("retry")
@_OUTBOX
@click.argument("event_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every quarantined event.")
def retry(outbox: Path | None, event_ids: tuple[str, ...], everything: bool) -> None:
    """Put quarantined events (EVENT_IDS, or --all) back in the queue, in their order."""
    if bool(event_ids) == everything:
        raise click.UsageError("name the events to retry (EVENT_ID...) or give --all")
    released = run(_release(_outbox_path(outbox), None if everything else list(event_ids)))
    unknown = sorted(set(event_ids) - set(released))
    click.echo(f"{len(released)} event(s) back in the queue; the edge service publishes them")
    if unknown:
        raise click.ClickException(f"not in quarantine: {', '.join(unknown)}")


def _outbox_path(outbox: Path | None) -> Path:
    path = outbox or settings().edge_outbox
    if not path.is_file():
        raise click.ClickException(f"no outbox at {path} (--outbox or TILLSTREAM_EDGE_OUTBOX)")
    return path


async def _read(path: Path) -> list[QuarantinedEvent]:
    box = Outbox(path)
    await box.open()
    try:
        return await box.quarantined()
    finally:
        await box.close()


async def _release(path: Path, event_ids: list[str] | None) -> list[str]:
    box = Outbox(path)
    await box.open()
    try:
        return await box.release(event_ids)
    finally:
        await box.close()
