"""The processes of the http_ingest stage: an HTTP server pinned to one core (tillstream's
edge app, or a trivial FastAPI app) and a keep-alive HTTP/1.1 load generator.

Started with the ``spawn`` method; only the standard library is imported at module level so
the load generator stays light.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
import uuid
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

STORE = "B000"
ID_MARK = "@@EVENT_ID@@"


def pin(core: int | None) -> None:
    """Run this process on ``core`` only (Linux), so "one core" holds."""
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})


# -- servers -----------------------------------------------------------------------------------


def serve(kind: str, port: int, outbox_path: str, core: int | None) -> None:
    """Process entry: serve ``ours`` (the edge app over a fresh outbox) or ``trivial``."""
    pin(core)
    asyncio.run(_serve(kind, port, Path(outbox_path)))


async def _serve(kind: str, port: int, outbox_path: Path) -> None:
    from tillstream.core.http import embedded_server

    if kind == "ours":
        from tillstream.core.codec import AvroCodec
        from tillstream.core.registry import FileRegistry
        from tillstream.core.schemas import SchemaSet
        from tillstream_edge.http_api import create_app
        from tillstream_edge.ingest import Ingestor
        from tillstream_edge.outbox import Outbox

        schemas = SchemaSet()
        outbox = Outbox(outbox_path)
        await outbox.open()
        app: Any = create_app(Ingestor(STORE, AvroCodec(FileRegistry(schemas), schemas), outbox))
    else:
        from bench.http_ingest_trivial import trivial_app

        app = trivial_app()
    await embedded_server(app, "127.0.0.1", port).serve()


# -- load generator ----------------------------------------------------------------------------


def load_generator(conn: Connection, templates: list[str], core: int | None) -> None:
    """Process entry: answer ``(port, per_request, requests, connections, seconds, cycle)``
    commands with ``(ok, failed, statuses, seconds)`` until sent ``None``.

    ``requests`` bodies are made (fresh event ids) before the clock starts. Without ``cycle``
    each is sent once (the run ends early if ``seconds`` pass first); with ``cycle`` they are
    sent round and round until ``seconds`` have passed (for a server that does not dedupe).
    """
    pin(core)
    while (command := conn.recv()) is not None:
        port, per_request, requests, connections, seconds, cycle = command
        bodies = make_bodies(templates, per_request, requests)
        conn.send(asyncio.run(_load(port, bodies, connections, seconds, cycle)))


def make_bodies(templates: list[str], per_request: int, requests: int) -> list[bytes]:
    """Request bodies with a fresh event id for every event (the outbox dedupes by id);
    ``per_request == 1`` sends a bare object, otherwise a JSON array."""
    out = []
    n = 0
    for _ in range(requests):
        events = []
        for _ in range(per_request):
            events.append(templates[n % len(templates)].replace(ID_MARK, str(uuid.uuid4())))
            n += 1
        out.append((events[0] if per_request == 1 else "[" + ",".join(events) + "]").encode())
    return out


async def _load(
    port: int, bodies: list[bytes], connections: int, seconds: float, cycle: bool
) -> tuple[int, int, dict[int, int], float]:
    head = (
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    requests = [head.format(port=port, length=len(b)).encode() + b for b in bodies]
    statuses: Counter[int] = Counter()
    next_request = itertools.cycle(requests) if cycle else iter(requests)
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    started = time.perf_counter()
    deadline = started + seconds

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for request in next_request:
            writer.write(request)
            statuses[await _response(reader)] += 1
            if time.perf_counter() >= deadline:
                return

    try:
        await asyncio.gather(*(client(r, w) for r, w in streams))
        elapsed = time.perf_counter() - started
    finally:
        for _, writer in streams:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    return ok, sum(statuses.values()) - ok, dict(statuses), elapsed


async def _response(reader: asyncio.StreamReader) -> int:
    """Read one response (Content-Length framed, as uvicorn sends them); its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is None:
        raise RuntimeError(f"response without Content-Length: {lines[0]}")
    await reader.readexactly(length)
    return status
