"""The http_ingest reference: the edge's framework (FastAPI on the same uvicorn settings)
with a ``POST /v1/events`` handler that reads the body and answers 202."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response


def trivial_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/events", status_code=202)
    async def post_events(request: Request) -> Response:
        await request.body()
        return Response(status_code=202)

    return app
