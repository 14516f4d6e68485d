"""Request bodies of a service's pages and APIs, read to a bound: a form's fields or a JSON
object, refused beyond ``limit`` bytes without reading further (a 5 MB note is never held)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

JSON = "application/json"


async def bounded(request: Request, limit: int) -> bytes | None:
    """The body, or None once it is larger than ``limit`` bytes."""
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def bounded_form(request: Request, limit: int) -> dict[str, str] | None:
    """The urlencoded form's fields (the first value of each), or None over ``limit``."""
    body = await bounded(request, limit)
    if body is None:
        return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


async def bounded_json(request: Request, limit: int, example: str) -> dict[str, Any] | Response:
    """The request's JSON object, or the answer refusing it: 415 for another content type,
    413 over ``limit`` bytes, 400 for anything but a JSON object (``example`` shows one)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != JSON:
        return error(415, f"the body must be {JSON}")
    raw = await bounded(request, limit)
    if raw is None:
        return error(413, f"the body must be at most {limit} bytes")
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        return error(400, f"the body must be JSON: {example}")
    if not isinstance(body, dict):
        return error(400, f"the body must be a JSON object: {example}")
    return body


def error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
