"""The edge's HTTP API for POS terminals (FastAPI; OpenAPI document at ``/openapi.json``).

``POST /v1/events`` takes one event or a JSON array; ``POST /v1/poslog`` takes an ARTS
POSLog document. A 2xx answer means every event is durable in the outbox. Resubmitting an
event id is answered exactly as the first time, so tills can retry freely.

With till tokens configured, both need ``Authorization: Bearer <token>`` (401 without a
known token, before the body is read); each event must be one the token's role may post
(``roles.py``: a till its own till's events, the store its store-day's open and close)
and a till's events must name the token's own till (403 otherwise, naming the field);
nothing refused is stored. Health, readiness and metrics stay open.

A till head office suspended or decommissioned is refused with 403 naming why: by its
token before its body is read, or, without tokens, by the till its events name. A request
taken tells the tills' book that its till was seen (``estate.access.record_posted``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from tillstream.core.http import metrics_response
from tillstream_edge import metrics
from tillstream_edge.estate.access import Posted, TillAccess, record_posted, refused_tills
from tillstream_edge.estate.tills import SOFTWARE_HEADER, software_of
from tillstream_edge.http_common import (
    authenticator,
    install_answers,
    problems_of,
    read_body,
    reason_of,
    reject,
)
from tillstream_edge.ingest import (
    Accepted,
    EventTooLarge,
    IngestError,
    Ingestor,
    refusal_reason,
)
from tillstream_edge.models import EVENT_LIST, ONE_EVENT
from tillstream_edge.outbox import OutboxEvent, OutboxFullError
from tillstream_edge.poslog import PoslogError, parse_poslog
from tillstream_edge.poslog_intake import (
    MAX_POSLOG_BYTES,
    PoslogBatch,
    accept_poslog,
    set_aside_logged,
)
from tillstream_edge.roles import STOCK_ONLY, names_a_till, refusal

log = logging.getLogger(__name__)

MAX_EVENTS_BODY = 10 * 1024 * 1024
MAX_POSLOG_BODY = MAX_POSLOG_BYTES


def create_app(
    ingestor: Ingestor,
    *,
    health: Callable[[], dict[str, Any]] | None = None,
    access: TillAccess | None = None,
) -> FastAPI:
    """The edge API for one store, writing through ``ingestor``; ``access``: the tokens in
    force (with a tokens file, every event-posting request must carry the token of the till
    its events name) and head office's suspensions; None: open, nothing refused."""
    app = FastAPI(
        title="tillstream edge",
        version="1",
        description="Store edge ingest: POS events made durable, then sent to Kafka.",
    )
    http_till = authenticator(access, "http")
    poslog_till = authenticator(access, "poslog")
    tokens = access if access is not None and access.tokens_required else None
    install_answers(app)

    @app.post(
        "/v1/events",
        status_code=202,
        summary="Submit one event or a JSON array of sale, payment, stock, till and post-void "
        "events",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/Event"},
                                {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                            ]
                        }
                    }
                },
            }
        },
        responses={
            401: {"description": "Till tokens are required and none known was given"},
            403: {
                "description": "An event names another till, or the token's role may not post "
                "it, or head office suspended or decommissioned the till"
            },
            422: {"description": "Invalid events; each bad field is named"},
            409: {"description": "An event id was reused with different content"},
            413: {"description": "Request too large, or an event larger than Kafka takes"},
            503: {"description": "Outbox full; retry later"},
        },
    )
    async def post_events(
        request: Request,
        # A default, not Annotated[...]: a postponed annotation cannot name a local dependency.
        till: str | None = Depends(http_till),
    ) -> Response:
        body = await read_body(request, "http", MAX_EVENTS_BODY)
        try:
            if body.lstrip()[:1] == b"[":
                parsed = EVENT_LIST.validate_json(body)
            else:
                parsed = [ONE_EVENT.validate_json(body)]
        except ValidationError as exc:
            return reject("http", 422, reason_of(exc), problems_of(exc))

        def where(i: int) -> str:
            return f"events[{i}]" if len(parsed) > 1 else ""

        records = [e.record() for e in parsed]
        posted = [Posted.of(e.type, r) for e, r in zip(parsed, records, strict=True)]
        paths = [f"{where(i)}." if where(i) else "" for i in range(len(parsed))]
        if refused := _refused(access, till, posted, paths, "http"):
            return refused
        try:
            events = [
                # The models held every field to the card-number and identifier rules.
                ingestor.encode(e.type, r, "http", where=where(i), checked=True)
                for i, (e, r) in enumerate(zip(parsed, records, strict=True))
            ]
        except EventTooLarge as exc:  # Kafka could never take it: refused, not queued
            return reject("http", 413, refusal_reason(exc), exc.problems)
        except IngestError as exc:
            return reject("http", 422, refusal_reason(exc), exc.problems)
        answer = await _store(ingestor, events, "http")
        if access is not None and answer.status_code == 202:
            software = software_of(request.headers.get(SOFTWARE_HEADER))
            record_posted(access, till, posted, software)
        return answer

    @app.post(
        "/v1/poslog",
        status_code=202,
        summary="Submit an ARTS POSLog XML document",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/xml": {"schema": {"type": "string"}}},
            }
        },
        responses={
            202: {
                "description": "Every converted transaction's events are durable; the answer "
                "lists each transaction skipped (not a sale by its nature) and each set aside "
                "(kept at the edge with its reason, to be re-run after a fix)"
            },
            401: {"description": "Till tokens are required and none known was given"},
            403: {
                "description": "A transaction names another till, or the token may not post "
                "it, or head office suspended or decommissioned the till"
            },
            413: {"description": "Document too large"},
            422: {"description": "Not a POSLog document that can be parsed at all"},
        },
    )
    async def post_poslog(request: Request, till: str | None = Depends(poslog_till)) -> Response:
        body = await read_body(request, "poslog", MAX_POSLOG_BODY)
        try:
            # POSLog carries no stock movements: no document for a stock-only token.
            if tokens is not None and till is not None and tokens.role_of(till) == STOCK_ONLY:
                document = [Posted("poslog", None, None, None)]
                if refused := _refused(access, till, document, ["poslog."], "poslog"):
                    return refused
            if tokens is not None or (access is not None and access.tills.any_refused):
                posted, paths = await asyncio.to_thread(_poslog_events, ingestor, body)
                if refused := _refused(access, till, posted, paths, "poslog"):
                    return refused
            batch, accepted = await accept_poslog(ingestor, body, "poslog", source="upload")
        except OutboxFullError as exc:
            return _not_stored("poslog", exc)
        except PoslogError as exc:
            metrics.POSLOG_FILES.labels("failed").inc()
            return reject(
                "poslog",
                422,
                refusal_reason(exc, poslog=True),
                [("poslog", str(exc))],
                logged=exc.logged,
            )
        kept = batch.all_set_aside
        if kept:  # the store's IT acts from the log: which transaction, and why
            log.warning(
                "poslog document: %d transaction(s) set aside (tillstream edge set-aside): %s",
                len(kept),
                set_aside_logged(kept),
            )
        if access is not None:
            software = software_of(request.headers.get(SOFTWARE_HEADER))
            record_posted(access, till, _converted(batch), software)
        return _accepted(accepted, **batch.report())

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: can accept events (Kafka may be down: we buffer)")
    async def readyz() -> Response:
        state = health() if health else {"ready": True}
        return JSONResponse(state, status_code=200 if state.get("ready", True) else 503)

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return metrics_response()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            event_schema = ONE_EVENT.json_schema(ref_template="#/components/schemas/{model}")
            components.update(event_schema.pop("$defs", {}))
            components["Event"] = event_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _poslog_events(ingestor: Ingestor, body: bytes) -> tuple[list[Posted], list[str]]:
    """Each converted transaction's events as the roles see them, and where each is. A second
    read of the document, and only with tokens or a till suspended: the conversion to events
    does not hand them out."""
    result = parse_poslog(
        body,
        default_currency=ingestor.currency,
        default_timezone=ingestor.timezone,
        dialect=ingestor.poslog_dialect,
    )
    posted: list[Posted] = []
    paths: list[str] = []
    for unit in result.converted:
        for event_type, record in unit.events:
            posted.append(Posted.of(event_type, record))
            paths.append(f"transaction {unit.label}.")
    return posted, paths


def _converted(batch: PoslogBatch) -> list[Posted]:
    """The events of a document's transactions taken, as the tills' book sees them."""
    return [
        Posted.of(event_type, record)
        for unit in batch.units
        for event_type, record in unit.converted.events
    ]


def _refused(
    access: TillAccess | None,
    client: str | None,
    posted: Sequence[Posted],
    paths: Sequence[str],
    channel: str,
) -> Response | None:
    """403 naming each event the client may not post, or None if it may post them all.

    With tokens: each event the token's role may not post (its ``type``, or a store-day's
    ``kind`` from a till), and each of a till's events naming another till
    (``terminal_id``). Without: each event of a till head office refuses (``terminal_id``).
    """
    if access is None:
        return None
    if not access.tokens_required or client is None:
        found = refused_tills(access, posted, paths)
        return reject(channel, 403, found[0], found[1]) if found else None
    role = access.role_of(client)
    problems: list[tuple[str, str]] = []
    for path, event in zip(paths, posted, strict=True):
        if (why := refusal(role, event.event_type, event.kind)) is not None:
            problems.append((f"{path}{why.field}", why.message))
        elif names_a_till(event.event_type, event.kind) and event.terminal != client:
            problems.append(
                (f"{path}terminal_id", f"names another till; this token is till {client}'s")
            )
    return reject(channel, 403, "forbidden", problems) if problems else None


async def _store(ingestor: Ingestor, events: list[OutboxEvent], channel: str) -> Response:
    try:
        accepted = await ingestor.accept(events)
    except (OutboxFullError, IngestError) as exc:
        return _not_stored(channel, exc)
    return _accepted(accepted)


def _not_stored(channel: str, exc: OutboxFullError | IngestError) -> Response:
    """503 while the outbox is full (retry later); 409 for an event id reused with other
    content (every event named)."""
    if isinstance(exc, OutboxFullError):
        return reject(channel, 503, refusal_reason(exc), [("outbox", str(exc))], retry_after=60)
    return reject(channel, 409, refusal_reason(exc), exc.problems)


def _accepted(accepted: Accepted, **more: Any) -> Response:
    """202: every event durable (a POSLog document's answer also lists what it skipped)."""
    answer = {"accepted": len(accepted.event_ids), "event_ids": accepted.event_ids, **more}
    return JSONResponse(answer, status_code=202)
