"""The edge's HTTP API for POS terminals (FastAPI; OpenAPI document at ``/openapi.json``).

``POST /v1/events`` takes one event or a JSON array; ``POST /v1/poslog`` takes an ARTS
POSLog document. A 2xx answer means every event is durable in the outbox. Resubmitting an
event id is answered exactly as the first time, so tills can retry freely.

With till tokens configured, both need ``Authorization: Bearer <token>`` (401 without a
known token, before the body is read); each event must be one the token's role may post
(``roles.py``: a till its own till's events, the store its store-day's open and close)
and a till's events must name the token's own till (403 otherwise, naming the field);
nothing refused is stored. Health, readiness and metrics stay open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from tillstream.core.http import metrics_response
from tillstream.core.identifiers import CARD_NUMBER
from tillstream.core.pan import mask_pans
from tillstream_edge import metrics
from tillstream_edge.auth import TillTokens
from tillstream_edge.ingest import (
    Accepted,
    EventTooLarge,
    IngestError,
    Ingestor,
    count_refusal,
    refusal_reason,
)
from tillstream_edge.models import EVENT_LIST, ONE_EVENT, StockMovementIn
from tillstream_edge.outbox import OutboxEvent, OutboxFullError
from tillstream_edge.poslog import PoslogError, parse_poslog
from tillstream_edge.poslog_intake import MAX_POSLOG_BYTES, accept_poslog, set_aside_logged
from tillstream_edge.roles import STOCK_ONLY, names_a_till, refusal

log = logging.getLogger(__name__)

MAX_EVENTS_BODY = 10 * 1024 * 1024
MAX_POSLOG_BODY = MAX_POSLOG_BYTES


REALM = 'Bearer realm="tillstream-edge"'
_BEARER = HTTPBearer(
    auto_error=False, description="The till's own token, from the edge's tokens file."
)


class BodyTooLarge(Exception):
    """A request body over the channel's limit: answered 413 as soon as the limit is passed."""

    def __init__(self, channel: str, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.channel = channel


class Unauthenticated(Exception):
    """No known till token: answered 401 before the request body is read."""

    def __init__(self, channel: str, message: str, challenge: str) -> None:
        super().__init__(message)
        self.channel = channel
        self.message = message
        self.challenge = challenge


def create_app(
    ingestor: Ingestor,
    *,
    health: Callable[[], dict[str, Any]] | None = None,
    tokens: TillTokens | None = None,
) -> FastAPI:
    """The edge API for one store, writing through ``ingestor``; ``tokens`` set: every
    event-posting request must carry the token of the till its events name."""
    app = FastAPI(
        title="tillstream edge",
        version="1",
        description="Store edge ingest: POS events made durable, then sent to Kafka.",
    )
    http_till = _authenticator(tokens, "http")
    poslog_till = _authenticator(tokens, "poslog")
    app.add_exception_handler(ClientDisconnect, _client_gone)

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(_request: Request, exc: Unauthenticated) -> Response:
        return _reject(
            exc.channel,
            401,
            "unauthenticated",
            [("authorization", exc.message)],
            headers={"WWW-Authenticate": exc.challenge},
        )

    @app.exception_handler(BodyTooLarge)
    async def too_large(_request: Request, exc: BodyTooLarge) -> Response:
        return _reject(exc.channel, 413, "too_large", [("body", str(exc))])

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
                "description": "An event names another till, or the token's role may not post it"
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
        body = await _read_body(request, "http", MAX_EVENTS_BODY)
        try:
            if body.lstrip()[:1] == b"[":
                parsed = EVENT_LIST.validate_json(body)
            else:
                parsed = [ONE_EVENT.validate_json(body)]
        except ValidationError as exc:
            return _reject("http", 422, _reason(exc), _problems(exc))

        def where(i: int) -> str:
            return f"events[{i}]" if len(parsed) > 1 else ""

        if tokens is not None and till is not None:
            posted = [
                (
                    e.type,
                    getattr(e, "kind", None),
                    None if isinstance(e, StockMovementIn) else e.terminal_id,
                )
                for e in parsed
            ]
            paths = [f"{where(i)}." if where(i) else "" for i in range(len(parsed))]
            if refused := _forbidden(tokens, till, posted, paths, "http"):
                return refused
        try:
            events = [
                # The models held every field to the card-number and identifier rules.
                ingestor.encode(e.type, e.record(), "http", where=where(i), checked=True)
                for i, e in enumerate(parsed)
            ]
        except EventTooLarge as exc:  # Kafka could never take it: refused, not queued
            return _reject("http", 413, refusal_reason(exc), exc.problems)
        except IngestError as exc:
            return _reject("http", 422, refusal_reason(exc), exc.problems)
        return await _store(ingestor, events, "http")

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
            403: {"description": "A transaction names another till, or the token may not post it"},
            413: {"description": "Document too large"},
            422: {"description": "Not a POSLog document that can be parsed at all"},
        },
    )
    async def post_poslog(request: Request, till: str | None = Depends(poslog_till)) -> Response:
        body = await _read_body(request, "poslog", MAX_POSLOG_BODY)
        try:
            if tokens is not None and till is not None:
                # POSLog carries no stock movements: no document for a stock-only token.
                if tokens.role_of(till) == STOCK_ONLY:
                    document = [("poslog", None, None)]
                    if refused := _forbidden(tokens, till, document, ["poslog."], "poslog"):
                        return refused
                posted, paths = await asyncio.to_thread(_poslog_events, ingestor, body)
                if refused := _forbidden(tokens, till, posted, paths, "poslog"):
                    return refused
            batch, accepted = await accept_poslog(ingestor, body, "poslog", source="upload")
        except OutboxFullError as exc:
            return _not_stored("poslog", exc)
        except PoslogError as exc:
            metrics.POSLOG_FILES.labels("failed").inc()
            return _reject(
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


def _authenticator(tokens: TillTokens | None, channel: str) -> Callable[..., Awaitable[str | None]]:
    """A dependency giving the posting till's id (None: tokens are not required)."""
    if tokens is None:

        async def open_to_all() -> None:
            return None

        return open_to_all

    async def till_of_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> str:
        # Never log or echo the token: it is the till's password.
        if credentials is None:
            raise Unauthenticated(channel, "a till token is required (Bearer)", REALM)
        till = tokens.till_of(credentials.credentials)
        if till is None:
            raise Unauthenticated(channel, "unknown token", f'{REALM}, error="invalid_token"')
        return till

    return till_of_token


Posted = tuple[str, str | None, str | None]
"""An event as the roles see it: type, a till event's kind, the till it names."""


def _poslog_events(ingestor: Ingestor, body: bytes) -> tuple[list[Posted], list[str]]:
    """Each converted transaction's events as the roles see them, and where each is. A second
    read of the document, and only with tokens: the conversion to events does not hand
    them out."""
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
            posted.append((event_type, record.get("kind"), record.get("terminal_id")))
            paths.append(f"transaction {unit.label}.")
    return posted, paths


def _forbidden(
    tokens: TillTokens,
    client: str,
    posted: Sequence[Posted],
    paths: Sequence[str],
    channel: str,
) -> Response | None:
    """403 naming each event the token's role may not post (its ``type``, or a store-day's
    ``kind`` from a till), and each of a till's events naming another till
    (``terminal_id``); or None if the token may post them all."""
    role = tokens.role_of(client)
    problems: list[tuple[str, str]] = []
    for path, (event_type, kind, terminal) in zip(paths, posted, strict=True):
        if (why := refusal(role, event_type, kind)) is not None:
            problems.append((f"{path}{why.field}", why.message))
        elif names_a_till(event_type, kind) and terminal != client:
            problems.append(
                (f"{path}terminal_id", f"names another till; this token is till {client}'s")
            )
    return _reject(channel, 403, "forbidden", problems) if problems else None


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
        return _reject(channel, 503, refusal_reason(exc), [("outbox", str(exc))], retry_after=60)
    return _reject(channel, 409, refusal_reason(exc), exc.problems)


def _accepted(accepted: Accepted, **more: Any) -> Response:
    """202: every event durable (a POSLog document's answer also lists what it skipped)."""
    answer = {"accepted": len(accepted.event_ids), "event_ids": accepted.event_ids, **more}
    return JSONResponse(answer, status_code=202)


async def _client_gone(_request: Request, _exc: Exception) -> Response:
    # A till that drops mid-upload (flaky Wi-Fi) stored nothing and hears no answer: not an
    # error with a traceback in the log, as an unhandled exception would be.
    return Response(status_code=400)


async def _read_body(request: Request, channel: str, limit: int) -> bytes:
    # A hint only (the streamed size below is the real guard); not every ASGI server checks it,
    # and int() fails on '²' (isdigit) or 4301+ digits, so 12+ digits count as too large.
    declared = request.headers.get("content-length", "").lstrip("0")
    if declared.isascii() and declared.isdigit() and (len(declared) > 12 or int(declared) > limit):
        raise BodyTooLarge(channel, limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(channel, limit)
        chunks.append(chunk)
    return b"".join(chunks)


_EVENT_TAGS = frozenset({"sale", "payment", "stock_movement", "till_event", "sale_void"})
"""The ``type`` values: pydantic puts the discriminator's tag in an error's path."""


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) for each error; the offending value is never echoed (PANs)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        parts: list[str] = []
        for i, part in enumerate(error["loc"]):
            if isinstance(part, int):
                parts.append(f"[{part}]" if parts or i else f"events[{part}]")
            elif part in _EVENT_TAGS and i <= 1:
                continue  # the discriminator tag pydantic adds to the path
            elif "[" in str(part):  # union/list wrappers such as 'list[...]'
                continue
            else:
                parts.append(f".{part}" if parts else str(part))
        field = "".join(parts).lstrip(".") or "body"
        problems.append((field, error["msg"].removeprefix("Value error, ")))
    return problems


def _reason(exc: ValidationError) -> str:
    """``card_number`` if any field looks like a card number, else ``invalid``."""
    kinds = {error["type"] for error in exc.errors(include_input=False, include_url=False)}
    return CARD_NUMBER if CARD_NUMBER in kinds else "invalid"


def _reject(
    channel: str,
    status: int,
    reason: str,
    problems: list[tuple[str, str]],
    *,
    retry_after: int | None = None,
    headers: dict[str, str] | None = None,
    logged: str | None = None,
) -> Response:
    """``logged``: why, as a log line may say it (no value sent); None: the fields say it."""
    count_refusal(channel, reason)
    # One line per refused request: reason and field names, never the messages (a POSLog
    # message may quote what was sent). A field name can be a key the till made up: masked.
    fields = sorted({mask_pans(f)[:80] for f, _ in problems})
    log.warning(
        "%s request refused with %d (%s): %s%s",
        channel,
        status,
        reason,
        ", ".join(fields[:20]) + (f" and {len(fields) - 20} more" if len(fields) > 20 else ""),
        f": {logged}" if logged else "",
    )
    headers = dict(headers or {})
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    # Messages from the POSLog reader may quote what the till sent: never a card number.
    return JSONResponse(
        {
            "error": reason,
            "problems": [{"field": mask_pans(f), "message": mask_pans(m)} for f, m in problems],
        },
        status_code=status,
        headers=headers,
    )
