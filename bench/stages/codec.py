"""Stage 1: encode + decode of realistic sales (5 lines): tillstream's codec (Confluent
framing, schema resolution, checks) vs bare fastavro schemaless encode/decode of the same
records with the same parsed schema."""

from __future__ import annotations

import io
import time
from typing import Any

import fastavro

from bench.env import BenchEnv
from bench.harness import paired, rate, ratio, stage_result


async def run(env: BenchEnv) -> dict[str, Any]:
    codec = env.codec()
    records = _records(2_000 if env.quick else 10_000)
    schema = fastavro.parse_schema(codec._current["sale"].definition)

    async def ours() -> float:
        started = time.perf_counter()
        for record in records:
            codec.decode(codec.encode("sale", record))
        return rate(len(records), started)

    async def bare() -> float:
        started = time.perf_counter()
        for record in records:
            out = io.BytesIO()
            fastavro.schemaless_writer(out, schema, record)
            out.seek(0)
            fastavro.schemaless_reader(out, schema, schema)
        return rate(len(records), started)

    mine, theirs = await paired(ours, bare, rounds=env.rounds, unit="events/s (encode+decode)")
    r = ratio(mine, theirs)
    return stage_result(
        figures={"encode_decode": mine},
        reference_name="fastavro schemaless_writer/reader, same records and schema",
        reference={"encode_decode": theirs},
        ratios={"encode_decode": r},
        target="at least 0.8 of fastavro's rate",
        met=r["median"] is not None and r["median"] >= 0.8,
    )


def _records(count: int) -> list[dict[str, Any]]:
    from bench.workload import sales

    return sales(count)
