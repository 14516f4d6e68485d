"""The edge's HTTP API for POS terminals (FastAPI; OpenAPI document at ``/openapi.json``).

``POST /v1/events`` takes one event or a JSON array; ``POST /v1/poslog`` takes an ARTS
POSLog document. A 2xx answer means every event is durable in the outbox. Resubmitting an
event id is answered exactly as the first time, so tills can retry freely.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from producers import metrics
from producers.ingest import IngestError, Ingestor, poslog_events
from producers.models import EVENT_LIST, ONE_EVENT
from producers.outbox import OutboxEvent, OutboxFullError
from producers.poslog import PoslogError
from tillstream.http import metrics_response

MAX_EVENTS_BODY = 10 * 1024 * 1024
MAX_POSLOG_BODY = 20 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


def create_app(
    ingestor: Ingestor, *, health: Callable[[], dict[str, Any]] | None = None
) -> FastAPI:
    """The edge API for one store, writing through ``ingestor``."""
    app = FastAPI(
        title="tillstream edge",
        version="1",
        description="Store edge ingest: POS events made durable, then sent to Kafka.",
    )

    @app.post(
        "/v1/events",
        status_code=202,
        summary="Submit one event or a JSON array of sale, payment and stock events",
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
            422: {"description": "Invalid events; each bad field is named"},
            409: {"description": "An event id was reused with different content"},
            413: {"description": "Request too large"},
            503: {"description": "Outbox full; retry later"},
        },
    )
    async def post_events(request: Request) -> Response:
        try:
            body = await _read_body(request, MAX_EVENTS_BODY)
        except BodyTooLarge:
            return _reject(
                "http", 413, "too_large", [("body", f"larger than {MAX_EVENTS_BODY} bytes")]
            )
        try:
            if body.lstrip()[:1] == b"[":
                parsed = EVENT_LIST.validate_json(body)
            else:
                parsed = [ONE_EVENT.validate_json(body)]
        except ValidationError as exc:
            return _reject("http", 422, "invalid", _problems(exc))
        try:
            events = [
                ingestor.encode(
                    e.type, e.record(), "http", where=f"events[{i}]" if len(parsed) > 1 else ""
                )
                for i, e in enumerate(parsed)
            ]
        except IngestError as exc:
            return _reject("http", 422, "invalid", exc.problems)
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
    )
    async def post_poslog(request: Request) -> Response:
        try:
            body = await _read_body(request, MAX_POSLOG_BODY)
        except BodyTooLarge:
            return _reject(
                "poslog", 413, "too_large", [("body", f"larger than {MAX_POSLOG_BODY} bytes")]
            )
        try:
            events = await asyncio.to_thread(poslog_events, ingestor, body, "poslog")
        except (PoslogError, IngestError) as exc:
            metrics.POSLOG_FILES.labels("failed").inc()
            return _reject("poslog", 422, "invalid_poslog", [("poslog", str(exc))])
        metrics.POSLOG_FILES.labels("converted").inc()
        return await _store(ingestor, events, "poslog")

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


async def _store(ingestor: Ingestor, events: list[OutboxEvent], channel: str) -> Response:
    try:
        accepted = await ingestor.accept(events)
    except OutboxFullError as exc:
        return _reject(channel, 503, "outbox_full", [("outbox", str(exc))], retry_after=60)
    except IngestError as exc:
        return _reject(channel, 409, "conflict", exc.problems, count=False)
    return JSONResponse(
        {"accepted": len(accepted.event_ids), "event_ids": accepted.event_ids}, status_code=202
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) for each error; the offending value is never echoed (PANs)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        parts: list[str] = []
        for i, part in enumerate(error["loc"]):
            if isinstance(part, int):
                parts.append(f"[{part}]" if parts or i else f"events[{part}]")
            elif part in ("sale", "payment", "stock_movement") and i <= 1:
                continue  # the discriminator tag pydantic adds to the path
            elif "[" in str(part):  # union/list wrappers such as 'list[...]'
                continue
            else:
                parts.append(f".{part}" if parts else str(part))
        field = "".join(parts).lstrip(".") or "body"
        problems.append((field, error["msg"].removeprefix("Value error, ")))
    return problems


def _reject(
    channel: str,
    status: int,
    reason: str,
    problems: list[tuple[str, str]],
    *,
    retry_after: int | None = None,
    count: bool = True,
) -> Response:
    if count:
        metrics.EVENTS_REJECTED.labels(channel, reason).inc()
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse(
        {"error": reason, "problems": [{"field": f, "message": m} for f, m in problems]},
        status_code=status,
        headers=headers,
    )
