"""The fleet service's JSON API (``tillstream fleet --api``, scripts), behind the service's
door (``runtime/guard.py``): reads need ``read``; a till's lifecycle needs ``manage`` (the
provider's fleet role, or a named token's scope), from this site, as JSON of at most
:data:`MAX_BODY` bytes.

| Request | Answer |
| --- | --- |
| ``GET /v1/fleet/stores`` | every store (``?store=S``: that one), flags first |
| ``GET /v1/fleet/stores/{store}`` | one store in detail (404 if unknown) |
| ``POST /v1/fleet/tills/lifecycle`` ``{"store", "till", "lifecycle"}`` | 201 and what was
published (``version``, ``published_by``); 200 ``{"published": null}`` if nothing changed |
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.fleet.desired import DesiredError
from tillstream_consumers.fleet import queries
from tillstream_consumers.fleet.deciding import set_lifecycle
from tillstream_consumers.fleet.flags import Rules
from tillstream_consumers.runtime.access import MANAGE, READ
from tillstream_consumers.runtime.api import Query
from tillstream_consumers.runtime.bodies import bounded_json, error
from tillstream_consumers.runtime.guard import principal_of, refused, refused_change

MAX_BODY = 4 * 1024
LIFECYCLE_FIELDS = frozenset({"store", "till", "lifecycle"})


def api_routes(
    query: Query, settings: Settings, rules: Rules, codec: Callable[[], AvroCodec]
) -> list[BaseRoute]:
    async def stores(request: Request) -> Response:
        if denied := refused(request, READ):
            return denied
        store = request.query_params.get("store") or None
        now = datetime.now(UTC)
        return JSONResponse(await query(lambda db: queries.estate(db, now, rules, store)))

    async def one_store(request: Request) -> Response:
        if denied := refused(request, READ):
            return denied
        store = request.path_params["store"]
        now = datetime.now(UTC)
        found = await query(lambda db: queries.store(db, store, now, rules))
        if found is None:
            return error(404, "the fleet service knows no such store")
        return JSONResponse(found)

    async def lifecycle(request: Request) -> Response:
        if denied := refused(request, MANAGE) or refused_change(request):
            return denied
        body = await bounded_json(
            request, MAX_BODY, '{"store": "S001", "till": "T02", "lifecycle": "suspended"}'
        )
        if isinstance(body, Response):
            return body
        problems = [
            {"field": name, "message": "not a field (store, till, lifecycle)"}
            for name in sorted(set(body) - LIFECYCLE_FIELDS)
        ]
        problems += [
            {"field": name, "message": "required, a string"}
            for name in sorted(LIFECYCLE_FIELDS)
            if not isinstance(body.get(name), str)
        ]
        if problems:
            return JSONResponse({"error": "invalid", "problems": problems}, status_code=422)
        principal = principal_of(request)
        assert principal is not None  # refused() let it through
        try:
            published = await set_lifecycle(
                settings, codec(), body["store"], body["till"], body["lifecycle"], principal
            )
        except DesiredError as exc:
            return JSONResponse(
                {"error": "invalid", "problems": [{"message": p} for p in exc.problems]},
                status_code=422,
            )
        if published is None:
            return JSONResponse({"published": None, "by": principal.trail})
        answer: dict[str, Any] = {
            "published": {"store": published.store_id, "target": published.target,
                          "version": published.version},
            "by": principal.trail,
        }  # fmt: skip
        return JSONResponse(answer, status_code=201)

    return [
        Route("/v1/fleet/stores", stores, methods=["GET"]),
        Route("/v1/fleet/stores/{store:path}", one_store, methods=["GET"]),
        Route("/v1/fleet/tills/lifecycle", lifecycle, methods=["POST"]),
    ]
