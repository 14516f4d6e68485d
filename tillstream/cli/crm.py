"""``tillstream crm``: data-protection requests for loyalty customers, and their profiles."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import click
from aiokafka.errors import KafkaError

from tillstream.cli.common import no_card_number, run, settings
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_producer
from tillstream.core.registry import registry_from_settings
from tillstream.core.settings import Settings
from tillstream.core.topics import CUSTOMER_REQUESTS


@click.group()
def crm() -> None:
    """Loyalty customers: erasure and re-enrolment requests, profiles."""


async def send_request(
    cfg: Settings, customer_id: str, action: str, reference: str | None = None
) -> dict[str, Any]:
    """Publish a customer request to every service keeping customer data; returns it."""
    request = {
        "event_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "action": action,
        "reference": reference,
        "requested_at": datetime.now(UTC),
    }
    codec = AvroCodec(registry_from_settings(cfg))
    value = codec.encode(CUSTOMER_REQUESTS.schema or "customer_request", request)
    producer = make_producer(cfg)
    try:
        await producer.start()  # inside: a failed start is stopped too, not left unclosed
        # Else the send waits out its timeout in silence and ends "UnknownTopicOrPartition".
        if CUSTOMER_REQUESTS.name not in (await producer.client.fetch_all_metadata()).topics():
            raise click.ClickException(
                f"topic {CUSTOMER_REQUESTS.name} does not exist on {cfg.kafka_bootstrap_servers}"
                ": create the topics first (tillstream topics create)"
            )
        # Keyed by customer id: one customer's requests stay in order.
        await producer.send_and_wait(CUSTOMER_REQUESTS.name, value, key=customer_id.encode())
    finally:
        await producer.stop()
    return request


def _send(customer_id: str, action: str, reference: str | None) -> None:
    cfg = settings()
    try:
        request = run(send_request(cfg, customer_id, action, reference))
    except KafkaError as exc:
        raise click.ClickException(
            f"cannot publish to {CUSTOMER_REQUESTS.name} on {cfg.kafka_bootstrap_servers}: {exc}"
        ) from None
    click.echo(f"{action} request {request['event_id']} published to {CUSTOMER_REQUESTS.name}")


_CUSTOMER_ID = click.argument("customer_id", callback=no_card_number)
_REFERENCE = click.option(
    "--reference", callback=no_card_number, help="Case or ticket reference (never personal data)."
)


@crm.command()
@_CUSTOMER_ID
@_REFERENCE
def erase(customer_id: str, reference: str | None) -> None:
    """Ask every service to forget CUSTOMER_ID (right to erasure) and ignore its later events."""
    _send(customer_id, "ERASE", reference)


@crm.command()
@_CUSTOMER_ID
@_REFERENCE
def reenrol(customer_id: str, reference: str | None) -> None:
    """CUSTOMER_ID joined again: events from now on build a new profile."""
    _send(customer_id, "REENROL", reference)


@crm.command()
@click.option("--day", help="Only this business day (YYYY-MM-DD).")
@click.option("--db", "db_url", help="The CRM's database. [env: TILLSTREAM_DB_URL]")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def implausible(day: str | None, db_url: str | None, as_json: bool) -> None:
    """Customer ids no one person could be: too many visits or stores in a business day
    (a programme's name or a shared card in the till's customer field)."""
    from tillstream.cli.service_read import HeldByService, held_elsewhere, open_database
    from tillstream_consumers.crm.plausibility import implausible as flagged

    cfg = settings(db_url=db_url)
    try:
        db = open_database(cfg.db_url)
    except HeldByService as held:
        why = "the CRM serves no profiles over HTTP (they are personal data)"
        raise held_elsewhere(cfg.db_url, held, why) from None
    try:
        try:
            found = flagged(db, day)
        except Exception as exc:  # no CRM tables: the consumer never ran on this database
            raise click.ClickException(f"cannot read CRM profiles: {exc}") from None
    finally:
        db.close()
    for row in found:
        if as_json:
            click.echo(json.dumps(row.as_json()))
        else:
            click.echo(
                f"{row.business_day}  {row.customer_id}  {row.visits} visits in "
                f"{row.stores} store(s)"
            )
    if not as_json:
        click.echo(f"-- {len(found)} implausible customer id(s)", err=True)


@crm.command()
@click.argument("customer_id")
@click.option("--db", "db_url", help="The CRM consumer's database URL. [env: TILLSTREAM_DB_URL]")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def show(customer_id: str, db_url: str | None, as_json: bool) -> None:
    """Print the profile of CUSTOMER_ID."""
    from tillstream.cli.service_read import HeldByService, held_elsewhere, open_database
    from tillstream_consumers.crm import load_profile, segment_of
    from tillstream_consumers.crm.erasure import customer_hash

    cfg = settings(db_url=db_url)
    try:
        db = open_database(cfg.db_url)
    except HeldByService as held:
        why = "the CRM serves no profiles over HTTP (they are personal data)"
        raise held_elsewhere(cfg.db_url, held, why) from None
    try:
        try:
            profile = load_profile(db, customer_id)
            erased = db.fetchone(
                "SELECT reenrolled_at FROM crm_erasures WHERE customer_hash = ?",
                (customer_hash(customer_id),),
            )
        except Exception as exc:  # no CRM tables: the consumer never ran on this database
            raise click.ClickException(f"cannot read CRM profiles: {exc}") from None
    finally:
        db.close()
    if profile is None:
        state = "was erased" if erased is not None else "has no profile"
        raise click.ClickException(f"customer {customer_id} {state}")
    segment = segment_of(profile, datetime.now(UTC))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "customer_id": profile.customer_id,
                    "first_visit": profile.first_visit.isoformat(),
                    "last_visit": profile.last_visit.isoformat(),
                    "visits": profile.visits,
                    "points": profile.points,
                    "favourite_store": profile.favourite_store,
                    "segment": segment.name,
                    "rfm": [segment.recency, segment.frequency, segment.monetary],
                    # Money as decimal strings: never through a float.
                    "spend": {
                        s.currency: {
                            "visits": s.visits,
                            "total": str(s.total),
                            "average_basket": str(s.average_basket),
                        }
                        for s in profile.spend
                    },
                }
            )
        )
        return
    click.echo(f"customer        {profile.customer_id}")
    click.echo(f"segment         {segment.name} (R{segment.recency} F{segment.frequency} "
               f"M{segment.monetary})")  # fmt: skip
    click.echo(f"visits          {profile.visits}")
    click.echo(f"first visit     {profile.first_visit:%Y-%m-%d %H:%M} UTC")
    click.echo(f"last visit      {profile.last_visit:%Y-%m-%d %H:%M} UTC")
    click.echo(f"favourite store {profile.favourite_store or '-'}")
    click.echo(f"points          {profile.points}")
    for s in profile.spend:
        click.echo(
            f"spend {s.currency}       {s.total:.2f} over {s.visits} visit(s), "
            f"average basket {s.average_basket:.2f}"
        )


COMMANDS = [crm]
