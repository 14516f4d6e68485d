"""Stage 3: HTTP ingest into the durable outbox. tillstream's edge app
(``tillstream_edge.http_api.create_app`` over an ``Ingestor`` and a fresh ``Outbox``: validation,
PAN check, Avro encoding, group-committed fsync before the 202) vs the same framework
(FastAPI on the same uvicorn settings) answering 202 from a handler that only reads the body.

Each server runs in its own process pinned to one core; the load generator (raw keep-alive
HTTP/1.1 over asyncio, ``CONNECTIONS`` connections, a fixed number of requests) runs in
another process on another core when there is one. Both servers get the same bodies (5-line
sales, single or in arrays of 100) apart from their event ids, which are fresh for every
event. Any non-2xx answer voids that figure: no rate is reported for it.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import socket
import sqlite3
import time
from multiprocessing.process import BaseProcess
from typing import Any

from bench.env import BenchEnv
from bench.harness import Figure, paired, ratio, stage_result
from bench.http_ingest_procs import ID_MARK, STORE, load_generator, serve
from tillstream.core.records import jsonable
from tillstream.dev.ports import free_port

CONNECTIONS = 16
BATCH = 100
TARGET = 10_000  # events/s, batch requests, one core


async def run(env: BenchEnv) -> dict[str, Any]:
    # Ours: this many requests, each with fresh event ids. The reference (no dedupe) cycles
    # through the same bodies for ``seconds``: it is far faster, and a fixed count would
    # time it over a few milliseconds.
    singles, batches, seconds = (500, 24, 0.25) if env.quick else (4_000, 150, 2.0)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_core = cores[0] if cores else None
    load_core = cores[-1] if len(cores) > 1 else None
    outbox = env.scratch / "http_ingest" / "outbox.db"
    ctx = multiprocessing.get_context("spawn")
    ports = {"ours": free_port(), "trivial": free_port()}
    servers = {
        kind: ctx.Process(
            target=serve, args=(kind, port, str(outbox), server_core), name=f"bench-{kind}"
        )
        for kind, port in ports.items()
    }
    parent, child = ctx.Pipe()
    loader = ctx.Process(
        target=load_generator, args=(child, _templates(), load_core), name="bench-load"
    )
    failures: dict[str, list[str]] = {}
    sent_to_ours = 0
    try:
        for process in (*servers.values(), loader):
            process.start()
        for kind, port in ports.items():
            await _wait_listening(port, servers[kind])

        def measure(kind: str, figure: str, per_request: int, requests: int) -> Any:
            async def one() -> float:
                nonlocal sent_to_ours
                cycle = kind == "trivial"
                limit = seconds if cycle else 120.0
                parent.send((ports[kind], per_request, requests, CONNECTIONS, limit, cycle))
                ok, failed, statuses, elapsed = await asyncio.to_thread(parent.recv)
                if kind == "ours":
                    sent_to_ours += ok * per_request
                if failed:
                    failures.setdefault(figure, []).append(f"{kind}: {failed} failed {statuses}")
                return float(ok * per_request / elapsed)

            return one

        single, single_ref = await paired(
            measure("ours", "single", 1, singles),
            measure("trivial", "single", 1, singles),
            rounds=env.rounds,
            unit="events/s (= requests/s)",
        )
        batch, batch_ref = await paired(
            measure("ours", "batch", BATCH, batches),
            measure("trivial", "batch", BATCH, batches),
            rounds=env.rounds,
            unit="events/s",
        )
    finally:
        if loader.is_alive():
            parent.send(None)
        _stop(loader, *servers.values())
    stored = _count(outbox)
    figures = {
        "single": single,
        "batch": batch,
        "batch_requests": _per_request(batch),
    }
    reference = {
        "single": single_ref,
        "batch": batch_ref,
        "batch_requests": _per_request(batch_ref),
    }
    notes = [
        f"{CONNECTIONS} keep-alive connections; per round ours answers {singles} single / "
        f"{batches} batch requests, the reference as many as it can in {seconds}s; "
        f"server on core {server_core}, load generator on core {load_core}; "
        f"outbox holds {stored} of the {sent_to_ours} events acknowledged"
    ]
    if stored != sent_to_ours:
        failures.setdefault("outbox", []).append(f"{sent_to_ours - stored} acknowledged not stored")
    for figure, problems in failures.items():
        notes.append(f"{figure} FAILED, no rate reported: {'; '.join(problems)}")
        for name in [figure, "batch_requests"] if figure == "batch" else [figure]:
            figures.pop(name, None)
            reference.pop(name, None)
    ratios = {name: ratio(figures[name], reference[name]) for name in figures}
    met = "batch" in figures and not failures.get("outbox") and batch.median >= TARGET
    return stage_result(
        figures=figures,
        reference_name="FastAPI handler reading the body and answering 202 (same uvicorn, "
        "same load generator, same bodies)",
        reference=reference,
        ratios=ratios,
        target=f"batch ingest >= {TARGET:,} events/s on one core",
        met=met,
        notes="; ".join(notes),
    )


def _templates() -> list[str]:
    """Till JSON for workload sales of this edge's store, event id left as a mark."""
    from bench.workload import sales

    out = []
    for sale in sales(200, stores=1):
        body = {"type": "sale", **jsonable(sale), "store_id": STORE, "event_id": ID_MARK}
        out.append(json.dumps(body, separators=(",", ":")))
    return out


def _per_request(events: Figure) -> Figure:
    return Figure("requests/s", [r / BATCH for r in events.rounds])


async def _wait_listening(port: int, process: BaseProcess, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise RuntimeError(f"{process.name} exited with code {process.exitcode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{process.name} not listening on {port} within {limit:.0f}s")


def _stop(*processes: BaseProcess) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(10)


def _count(path: Any) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        (count,) = db.execute("SELECT count(*) FROM events").fetchone()
    return int(count)
