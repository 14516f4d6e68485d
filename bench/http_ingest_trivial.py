"""The http_ingest reference: the edge's framework (FastAPI on the same uvicorn settings)
with a ``POST /v1/events`` handler that reads the body and answers 202; and the masterdata
stage's: ``GET /v1/items/{code}`` answering a fixed item of the edge's shape."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

ITEM = {
    "sku": "SKU-MILK-1L",
    "description": "Milk 1 l",
    "gtins": ["4006381333931"],
    "unit_of_measure": "EA",
    "weighed": False,
    "stock_item": True,
    "tax_class": "STD",
    "published_at": "2026-11-29T06:00:00Z",
    "price": {"amount": "1.19", "currency": "EUR"},
}


def trivial_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/events", status_code=202)
    async def post_events(request: Request) -> Response:
        await request.body()
        return Response(status_code=202)

    @app.get("/v1/items/{code}")
    async def get_item(code: str) -> JSONResponse:
        return JSONResponse(ITEM)

    return app
