"""The till API of the store's master-data copy: one item with its price now, and delta feeds.

- ``GET /v1/items/{sku-or-gtin}``: the item, with the list price valid for this store now
  (``tillstream.core.prices``), or 404.
- ``GET /v1/items?since=TOKEN&limit=N`` and ``GET /v1/prices?since=TOKEN&limit=N``: the
  changes after the token (upserts, and deletions marked ``"deleted": true``), oldest first,
  and the ``next`` token; a till syncs by following ``next`` until a page is empty. No
  ``since``: from the start.

Same till tokens as posting (``auth.py``, with head office's rotations): with a tokens
file, any known token may read (a till's or a stock-only client's); none or an unknown one
is a 401, a till head office suspended a 403. Reads run off the
event loop, in their own SQLite connections: a till syncing 10,000 rows never holds up a
sale.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response

from tillstream_edge.estate.access import TillAccess
from tillstream_edge.http_common import authenticator
from tillstream_edge.masterdata_copy import MasterDataCopy
from tillstream_edge.masterdata_tokens import TokenError

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 1000
MAX_CODE = 64
"""Longest SKU (``core.identifiers``); a GTIN has at most 14 digits."""
MAX_LIMIT = 10_000
CHANNEL = "masterdata"
"""What a refused read is counted as (``tillstream_edge_events_rejected_total{channel}``)."""

_UNREADABLE = (RuntimeError, sqlite3.Error, ValueError, ArithmeticError)
"""The copy not open, or a file or row it cannot read: 503, never a 500 (TokenError, a
ValueError, is caught before)."""


def master_data_router(
    copy: MasterDataCopy,
    access: TillAccess | None,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> APIRouter:
    """The master-data routes of one store's edge, reading ``copy``."""
    # Any known token may read; without a tokens file the API is open, as posting is.
    reader = authenticator(access, CHANNEL)
    router = APIRouter(tags=["master data"], dependencies=[Depends(reader)])

    @router.get(
        "/v1/items/{code:path}",
        summary="One item by SKU or GTIN (8, 12, 13 or 14 digits), with its price here now",
        responses={404: {"description": "No such item in the store's copy of the item master"}},
    )
    async def get_item(code: Annotated[str, Path(description="SKU or GTIN")]) -> Response:
        try:
            item = (
                None if len(code) > MAX_CODE else await asyncio.to_thread(copy.item, code, clock())
            )
        except _UNREADABLE as exc:
            return _unavailable(exc)
        if item is None:
            # The code is not quoted: a till may have sent anything, a card number included.
            return _problem(
                404,
                "not_found",
                "code",
                "no item has this SKU or GTIN in the store's copy of the item master",
            )
        return JSONResponse(item)

    @router.get("/v1/items", summary="Item changes after a token (no token: from the start)")
    async def item_changes(
        since: Annotated[str | None, Query(description="'next' of the last page")] = None,
        limit: Annotated[str | None, Query(description=f"1-{MAX_LIMIT}")] = None,
    ) -> Response:
        return await _changes(copy, copy.item_changes, "items", since, limit)

    @router.get("/v1/prices", summary="Price changes after a token (no token: from the start)")
    async def price_changes(
        since: Annotated[str | None, Query(description="'next' of the last page")] = None,
        limit: Annotated[str | None, Query(description=f"1-{MAX_LIMIT}")] = None,
    ) -> Response:
        return await _changes(copy, copy.price_changes, "prices", since, limit)

    return router


async def _changes(
    copy: MasterDataCopy,
    read: Callable[[int, int], tuple[list[dict[str, Any]], int]],
    name: str,
    since: str | None,
    limit_text: str | None,
) -> Response:
    # Checked here, not by FastAPI: its 422 would echo what was sent (anything, a card number).
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        if not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 6):
            return _problem(
                400, "invalid", "limit", f"must be a whole number from 1 to {MAX_LIMIT}"
            )
        limit = int(limit_text)
        if not 1 <= limit <= MAX_LIMIT:
            return _problem(
                400, "invalid", "limit", f"must be a whole number from 1 to {MAX_LIMIT}"
            )

    def page() -> tuple[list[dict[str, Any]], int]:
        return read(copy.parse_token(since), limit)

    try:
        rows, last = await asyncio.to_thread(page)
    except TokenError as exc:
        status, error = (410, "token_expired") if exc.gone else (400, "invalid_token")
        return _problem(status, error, "since", str(exc))
    except _UNREADABLE as exc:
        return _unavailable(exc)
    return JSONResponse({name: rows, "next": copy.token(last), "more": len(rows) == limit})


def _unavailable(exc: Exception) -> Response:
    """503: the copy cannot be read (not open, a damaged file); the edge log says why."""
    log.error("master data not readable: %s", exc)
    return _problem(
        503, "unavailable", "masterdata", "the store's copy of the item master cannot be read"
    )


def _problem(status: int, error: str, field: str, message: str) -> Response:
    return JSONResponse(
        {"error": error, "problems": [{"field": field, "message": message}]}, status_code=status
    )
