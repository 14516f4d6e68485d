"""Stage: master data from head office to a store's edge (issue 15). Three figures:

- ``publish_to_serving``: seconds from the start of publishing a change of 10,000 items
  (``publish_file`` with ``ITEM_KIND``, as ``tillstream items publish`` does, on top of a
  topic that already holds 50,000 items; 2,000 of 5,000 in a quick run) to the moment a
  running edge (``tillstream edge run``, a process) serves the last of them with its new
  description: the edge's delta feed, followed from a token taken before the publish, has
  shown every changed item (the copy applies in batches of 5,000 records across partitions,
  so the file's last row is not the last applied). The file's last item is then asked for
  by SKU; a round where it or any change is missing fails.
  No reference: a latency. ``publish_returned`` is the part until ``publish_file`` returned
  (file read, topic read and compared, every record acknowledged).
- ``apply``: records per second with which one edge builds its copy of the items topic from
  scratch (``MasterDataCopy`` and ``MasterDataSync`` in this process: read, decode, write
  SQLite, keep positions) vs a bare aiokafka consumer reading the same topic from the start
  and decoding every record with the project's codec, in alternate rounds.
- ``lookup``: ``GET /v1/items/{gtin}`` of random GTINs on the running edge, ``CLIENTS``
  keep-alive connections each doing a fixed number of lookups (p50/p99 latency, lookups/s)
  vs the edge's framework (FastAPI on the same embedded uvicorn, ``bench.http_ingest_trivial``)
  answering the same path with a fixed item, same load generator.

Every wait is bounded in time; every loop in count.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import shutil
import statistics
import time
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import TopicPartition

from bench.env import BenchEnv
from bench.harness import Figure, paired, rate, ratio, stage_result
from bench.http_ingest_procs import serve
from bench.stages.http_ingest import _stop, _wait_listening
from tillstream.core.kafka import create_topics, make_consumer
from tillstream.core.spreadsheet import csv_writer
from tillstream.core.topics import ITEMS
from tillstream.dev.ports import free_port
from tillstream.dev.processes import Service
from tillstream.masterdata.publish import ITEM_KIND, publish_file
from tillstream_edge.masterdata_copy import MasterDataCopy
from tillstream_edge.masterdata_sync import MasterDataSync

CLIENTS = 16
STORE = "S-BENCH"
HEADER = "sku,gtins,description,unit_of_measure,weighed,stock_item,reorder_point,lead_time_days"
WAIT = 120.0
"""Seconds any one wait may take at most (a build, a change served, a round of lookups)."""


def sku(n: int) -> str:
    return f"BENCH-{n:06d}"


def gtin(n: int) -> str:
    body = f"4002{n:08d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def write_items(path: Path, count: int, changed: int = 0, tag: str = "") -> Path:
    """``count`` items; the first ``changed`` with ``tag`` in their description."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv_writer(out)
        writer.writerow(HEADER.split(","))
        for n in range(count):
            text = f"Item {n} {tag}" if n < changed else f"Item {n}"
            writer.writerow([sku(n), gtin(n), text.strip(), "EA", "false", "true", 5, 3])
    return path


async def run(env: BenchEnv) -> dict[str, Any]:
    items, change = (5_000, 2_000) if env.quick else (50_000, 10_000)
    lookups = 50 if env.quick else 300  # per client and round
    work = env.scratch / "masterdata"
    work.mkdir(parents=True, exist_ok=True)
    await create_topics(env.settings)
    codec = env.codec()
    await publish_file(env.settings, codec, ITEM_KIND, write_items(work / "base.csv", items))
    held = await _topic_records(env)

    # -- apply: an edge's copy built from scratch vs a bare consumer ---------------------
    builds = 0

    async def ours() -> float:
        nonlocal builds
        builds += 1
        folder = work / f"copy-{builds}"
        copy = MasterDataCopy(folder / "masterdata.db", STORE, UTC, env.codec())
        await copy.open()
        sync = MasterDataSync(env.settings, copy, rebuild_after=timedelta(days=6))
        started = time.perf_counter()
        task = asyncio.create_task(sync.run())
        try:
            deadline = time.monotonic() + WAIT
            while sync.records_read < held or (await asyncio.to_thread(copy.counts))[0] < items:
                if task.done() or time.monotonic() > deadline:
                    raise RuntimeError(f"copy read {sync.records_read} of {held} records")
                await asyncio.sleep(0.02)
            return rate(sync.records_read, started)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await copy.close()
            shutil.rmtree(folder, ignore_errors=True)

    async def bare() -> float:
        consumer = make_consumer(env.settings, group_id=None)
        await consumer.start()
        try:
            parts = await _partitions(consumer)
            consumer.assign(parts)
            ends = await consumer.end_offsets(parts)
            await consumer.seek_to_beginning(*parts)
            decode = env.codec().decode
            started = time.perf_counter()
            count, deadline = 0, time.monotonic() + WAIT
            while [p for p in parts if await consumer.position(p) < ends[p]]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bare consumer read {count} of {held}")
                batches = await consumer.getmany(timeout_ms=500, max_records=5_000)
                for records in batches.values():
                    for record in records:
                        decode(record.value)
                        count += 1
            return rate(count, started)
        finally:
            await consumer.stop()

    apply, apply_ref = await paired(ours, bare, rounds=env.rounds, unit="records/s")

    # -- a running edge: publish to serving, then lookups under load -----------------------
    edge_port = free_port()
    edge = Service(
        "edge (bench)",
        ["edge", "run", "--store", STORE, "--listen", f"127.0.0.1:{edge_port}",
         "--outbox", str(work / "edge" / "outbox.db")],
        edge_port,
        work / "edge.log",
        {"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": env.settings.kafka_bootstrap_servers,
         "TILLSTREAM_TOPIC_PARTITIONS": str(env.settings.topic_partitions)},
        ready_path="/healthz",
    )  # fmt: skip
    (work / "edge").mkdir(exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    trivial_port = free_port()
    trivial = ctx.Process(
        target=serve,
        args=("trivial", trivial_port, str(work / "unused.db"), None),
        name="bench-trivial",
    )
    serving, returned = Figure("s"), Figure("s")
    problems: list[str] = []
    try:
        edge.start()
        trivial.start()
        await asyncio.to_thread(edge.wait_ready, 60)
        await _wait_listening(trivial_port, trivial)
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as http:
            await _until(lambda: _serves(http, sku(items - 1), f"Item {items - 1}"), "the base")
            for n in range(env.rounds):
                tag = f"r{n + 1}"
                path = write_items(work / f"change-{tag}.csv", items, change, tag)
                since = await _last_token(http)
                started = time.perf_counter()
                changes = await publish_file(env.settings, codec, ITEM_KIND, path)
                returned.rounds.append(time.perf_counter() - started)
                seen = await _changed_since(http, since, tag, change)
                serving.rounds.append(time.perf_counter() - started)
                if not await _serves(http, sku(change - 1), f"Item {change - 1} {tag}"):
                    problems.append(f"round {tag}: the last item of the file not served")
                if len(changes.changed) != change or seen != change:
                    problems.append(
                        f"round {tag}: {len(changes.changed)} published, {seen} in the feed"
                    )
        codes = [gtin(n) for n in random.Random(15).sample(range(items), min(items, 2_000))]
        quantiles = {
            (kind, q): Figure("ms") for kind in ("ours", "trivial") for q in ("p50", "p99")
        }
        calls = {"ours": 0, "trivial": 0}

        def looking(port: int, kind: str) -> Any:
            async def one() -> float:
                done, seconds, samples = await _lookups(port, codes, lookups)
                calls[kind] += 1
                if calls[kind] > 1:  # the first is paired()'s warm-up
                    ordered = sorted(samples)
                    quantiles[kind, "p50"].rounds.append(_quantile(ordered, 0.5) * 1000)
                    quantiles[kind, "p99"].rounds.append(_quantile(ordered, 0.99) * 1000)
                if done != CLIENTS * lookups:
                    problems.append(f"{kind}: {done} of {CLIENTS * lookups} lookups answered")
                return done / seconds

            return one

        lookup, lookup_ref = await paired(
            looking(edge_port, "ours"),
            looking(trivial_port, "trivial"),
            rounds=env.rounds,
            unit="lookups/s",
        )
    finally:
        edge.stop()
        _stop(trivial)
    figures = {
        "publish_to_serving": serving,
        "publish_returned": returned,
        "apply": apply,
        "lookup": lookup,
    }
    reference = {"apply": apply_ref, "lookup": lookup_ref}
    for q in ("p50", "p99"):
        figures[f"lookup_{q}"] = quantiles["ours", q]
        reference[f"lookup_{q}"] = quantiles["trivial", q]
    ratios = {name: ratio(figures[name], reference[name]) for name in reference}
    notes = [
        f"{items} items on the topic ({held} records); each round publishes a change of "
        f"{change} items; lookups: {CLIENTS} keep-alive connections x {lookups} random GTINs "
        "per round (latency quantiles per round); the load generator shares the "
        "machine's cores with the servers"
    ]
    notes += [f"FAILED: {p}" for p in problems]
    apply_ratio = ratios["apply"]["median"]
    return stage_result(
        figures=figures,
        reference_name="apply: bare aiokafka consumer decoding the same topic with the "
        "project's codec; lookup: FastAPI on the same embedded uvicorn answering a fixed item",
        reference=reference,
        ratios=ratios,
        target="apply at least 0.3 of the bare consumer (the ERP's); the rest informational",
        met=None if problems else apply_ratio is not None and apply_ratio >= 0.3,
        notes="; ".join(notes),
    )


# -- helpers ---------------------------------------------------------------------------------


async def _partitions(consumer: Any) -> list[TopicPartition]:
    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(ITEMS.name, p) for p in sorted(cluster.partitions_for_topic(ITEMS.name))]


async def _topic_records(env: BenchEnv) -> int:
    """Records on the items topic (from offset 0: nothing is compacted away this young)."""
    consumer = make_consumer(env.settings, group_id=None)
    await consumer.start()
    try:
        parts = await _partitions(consumer)
        starts = await consumer.beginning_offsets(parts)
        ends = await consumer.end_offsets(parts)
        return sum(ends[p] - starts[p] for p in parts)
    finally:
        await consumer.stop()


async def _serves(http: httpx.AsyncClient, code: str, description: str) -> bool:
    answer = await http.get(f"/v1/items/{code}")
    return answer.status_code == 200 and answer.json().get("description") == description


async def _until(check: Any, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + WAIT
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {WAIT:.0f}s: {what}")
        await asyncio.sleep(poll)


async def _last_token(http: httpx.AsyncClient) -> str:
    """The delta feed's token after everything the copy holds now."""
    params: dict[str, Any] = {"limit": 10_000}
    for _ in range(1_000):
        page = (await http.get("/v1/items", params=params)).json()
        params["since"] = str(page["next"])
        if not page["items"]:
            return str(page["next"])
    raise RuntimeError("the delta feed did not end")


async def _changed_since(http: httpx.AsyncClient, since: str, tag: str, count: int) -> int:
    """Follows the delta feed from ``since`` until ``count`` items whose description carries
    ``tag`` have come (the copy serves an entry once it is in the feed), or ``WAIT`` passed;
    returns how many came."""
    found: set[str] = set()
    token, deadline = since, time.monotonic() + WAIT
    while len(found) < count and time.monotonic() < deadline:
        page = (await http.get("/v1/items", params={"since": token, "limit": 10_000})).json()
        token = str(page["next"])
        found.update(e["sku"] for e in page["items"] if str(e.get("description", "")).endswith(tag))
        if not page["items"]:
            await asyncio.sleep(0.05)
    return len(found)


async def _lookups(port: int, codes: list[str], each: int) -> tuple[int, float, list[float]]:
    """``CLIENTS`` connections, each ``each`` GETs of random codes on raw HTTP/1.1 keep-alive;
    returns (200 answers, seconds, latency of each answer)."""
    samples: list[float] = []
    answered = 0

    async def client(seed: int) -> None:
        nonlocal answered
        pick = random.Random(seed)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(each):
                code = pick.choice(codes)
                sent = time.perf_counter()
                writer.write(f"GET /v1/items/{code} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                status, _ = await _response(reader)
                samples.append(time.perf_counter() - sent)
                answered += status == 200
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(CLIENTS))), WAIT)
    return answered, time.perf_counter() - started, samples


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def _quantile(ordered: list[float], q: float) -> float:
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]
