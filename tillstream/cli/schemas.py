"""``tillstream schemas``: the Avro contracts."""

from __future__ import annotations

from pathlib import Path

import click

from tillstream.core import event_types
from tillstream.core import schemas as schema_set
from tillstream.core.topics import EVENT_TOPICS


@click.group()
def schemas() -> None:
    """Inspect and check the Avro event contracts."""


_DIR = click.option(
    "--dir",
    "root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Schema directory. [default: the bundled schemas]",
)


@schemas.command("check")
@_DIR
@click.option("--pin", is_flag=True, help="Assign ids to new versions in ids.json first.")
def check(root: Path | None, pin: bool) -> None:
    """Fail unless every schema is documented, pinned and backward compatible (transitively)."""
    try:
        found = schema_set.SchemaSet(root)
        if pin:
            for line in schema_set.pin_new_versions(found):
                click.echo(f"pinned {line}")
            found = schema_set.SchemaSet(root)
    except schema_set.SchemaSetError as exc:
        raise click.ClickException(str(exc)) from None
    problems = schema_set.check(found)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} schema problem(s) in {found.root}")
    count = len(found.all_versions())
    click.echo(f"ok: {count} schema versions of {len(found.versions)} events in {found.root}")


@schemas.command("list")
@_DIR
def list_(root: Path | None) -> None:
    """List events, their versions, ids and topics."""
    found = schema_set.SchemaSet(root)
    for event, versions in found.versions.items():
        topic = EVENT_TOPICS[event].name if event in EVENT_TOPICS else "-"
        for v in versions:
            click.echo(f"{event:16} v{v.version:<3} id={v.schema_id!s:5} {v.full_name:30} {topic}")


@schemas.command("types")
@click.option("--check", is_flag=True, help="Only fail if the module is out of date.")
def types(check: bool) -> None:
    """Generate tillstream/core/events.py (a TypedDict per event type) from schemas/."""
    target = event_types.TARGET
    if check:
        if not target.exists() or target.read_text() != event_types.render():
            raise click.ClickException(f"{target} is out of date: run tillstream schemas types")
        click.echo(f"ok: {target} is up to date")
        return
    changed = event_types.write()
    click.echo(f"{'wrote' if changed else 'unchanged:'} {target}")


COMMANDS = [schemas]
