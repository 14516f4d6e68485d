"""Stage 6: the broker's limit on this machine. Kafka's own producer performance tool
(``org.apache.kafka.tools.ProducerPerformance``, Java client) with tillstream's producer
settings (``acks=all``, idempotent, ``linger.ms=5``, lz4) and records the median size of an
encoded 5-line sale, alternated round by round with a bare ``AIOKafkaProducer`` sending the
same number of records of the same size and kind (random A-Z bytes, no key, as the tool
sends them). Informational: edge_publish (stage 2) is reported as a fraction of it.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import statistics
import time
from typing import Any

from bench.env import BenchEnv
from bench.harness import Figure, paired, rate, ratio, stage_result
from tillstream.core.kafka import create_topics, make_producer
from tillstream.core.topics import TopicSpec
from tillstream.dev.broker import DevKafkaError, LocalKafka

TOPIC = TopicSpec("bench-ceiling", None, {"compression.type": "producer"})
PRODUCER_PROPS = ("acks=all", "enable.idempotence=true", "linger.ms=5", "compression.type=lz4")

LAST: dict[str, Any] = {}
"""Set by :func:`run`: ``producer_perf`` (records/s figure as JSON) and ``record_size``."""

_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDERR
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
"""

# "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency,
#  p50 ms 50th, p95 ms 95th, p99 ms 99th, p999 ms 99.9th."
_SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99\.9th"
)


async def run(env: BenchEnv) -> dict[str, Any]:
    if env.libs is None or shutil.which("java") is None:
        raise DevKafkaError("the ceiling stage needs Java and Kafka's jars (env.libs)")
    await create_topics(env.settings, (TOPIC,))
    size = record_size(env)
    # The tool runs in a fresh JVM each round: too few records measure its JIT warm-up.
    count = 50_000 if env.quick else 300_000
    bare_count = 20_000 if env.quick else 100_000  # aiokafka is steady after a few thousand
    # The tool's own launcher: same JVM flags and classpath as the dev broker.
    java = LocalKafka(data_dir=env.scratch / "ceiling", libs=env.libs, port=0)
    java.data_dir.mkdir(parents=True, exist_ok=True)
    (java.data_dir / "log4j2.properties").write_text(_LOG4J2)
    command = java._java(
        "org.apache.kafka.tools.ProducerPerformance",
        *("--topic", TOPIC.name, "--num-records", str(count), "--record-size", str(size)),
        *("--throughput", "-1", "--producer-props"),
        f"bootstrap.servers={','.join(env.settings.bootstrap_servers)}",
        *PRODUCER_PROPS,
    )
    summaries: list[dict[str, float]] = []

    async def tool() -> float:
        summary = await _producer_perf(command)
        if int(summary["records"]) != count:
            raise RuntimeError(f"ProducerPerformance sent {summary['records']} of {count}")
        summaries.append(summary)
        return summary["rate"]

    rng = random.Random(7)
    payloads = [bytes(rng.choices(range(65, 91), k=size)) for _ in range(1_000)]

    async def bare() -> float:
        producer = make_producer(env.settings)
        await producer.start()
        try:
            started = time.perf_counter()
            futures = [
                await producer.send(TOPIC.name, payloads[i % len(payloads)])
                for i in range(bare_count)
            ]
            await asyncio.gather(*futures)
            return rate(bare_count, started)
        finally:
            await producer.stop()

    perf, aiokafka = await paired(
        tool, bare, rounds=env.rounds, warmup=0 if env.quick else 1, unit="records/s"
    )
    measured = summaries[-env.rounds :]  # the paired rounds, not the warm-up
    figures = {
        "producer_perf": perf,
        "producer_perf_mb": Figure("MB/s", [s["mb"] for s in measured]),
        "latency_avg": Figure("ms", [s["avg"] for s in measured]),
        "latency_p99": Figure("ms", [s["p99"] for s in measured]),
        "aiokafka_bare": aiokafka,
    }
    reference = {"aiokafka_bare": perf}
    ratios = {"aiokafka_bare": ratio(aiokafka, perf)}
    LAST.update(producer_perf=perf.as_json(), record_size=size)
    notes = (
        f"{count} records (aiokafka: {bare_count}) of {size} bytes (median encoded 5-line "
        f"sale) per round to {TOPIC.name}, a fresh JVM each round; aiokafka_bare is "
        "ours/reference = aiokafka / ProducerPerformance, "
        "measured in the same alternating rounds"
    )
    edge = _edge_publish()
    if edge is not None:
        figures["edge_publish"] = edge
        reference["edge_publish"] = perf
        ratios["edge_publish"] = _fraction(edge, perf)
        notes += (
            "; edge_publish is stage 2's rate (events of the same size, keyed, from the outbox) "
            "over this ceiling: medians from different rounds, so min/max bound it"
        )
    return stage_result(
        figures=figures,
        reference_name="Kafka ProducerPerformance (Java client): the broker's limit here",
        reference=reference,
        ratios=ratios,
        target="informational: the broker's limit on this machine; stage 2 as a fraction",
        met=None,
        notes=notes,
    )


def record_size(env: BenchEnv) -> int:
    """The median encoded size of a 5-line workload sale."""
    from bench.workload import sales

    codec = env.codec()
    return int(statistics.median(len(codec.encode("sale", s)) for s in sales(501)))


async def _producer_perf(command: list[str]) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    text = out.decode(errors="replace")
    found = [m.groupdict() for m in _SUMMARY.finditer(text)]
    if process.returncode != 0 or not found:
        raise RuntimeError(
            f"ProducerPerformance failed (exit {process.returncode}):\n"
            f"{text[-2000:]}{err.decode(errors='replace')[-2000:]}"
        )
    return {k: float(v) for k, v in found[-1].items()}


def _edge_publish() -> Figure | None:
    """Stage 2's events/s, if it ran in this process."""
    from bench.stages import edge_publish

    last = edge_publish.LAST.get("rate")
    if not last:
        return None
    return Figure(last["unit"], list(last["rounds"]))


def _fraction(part: Figure, whole: Figure) -> dict[str, Any]:
    """``part / whole`` from medians (with bounds from the extremes), for figures that were
    not measured in the same rounds."""
    if not part.rounds or not whole.rounds:
        return {"median": None, "min": None, "max": None, "rounds": []}
    return {
        "median": round(part.median / whole.median, 3),
        "min": round(min(part.rounds) / max(whole.rounds), 3),
        "max": round(max(part.rounds) / min(whole.rounds), 3),
        "rounds": [],
    }
