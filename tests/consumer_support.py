"""Running consumer services in tests: in-process tasks, and producing store events."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import EVENT_TOPICS, store_key
from tillstream.dev.ports import free_port
from tillstream.dev.processes import Service, run_tillstream
from tillstream_consumers.runtime.api import Consumer
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.runner import ConsumerService, RunnerConfig

ROOT = Path(__file__).resolve().parent.parent
TILLSTREAM_SCRIPT = (str(Path(sys.executable).with_name("tillstream")),)
"""The ``tillstream`` console script of this venv: unlike ``python -m tillstream``, it does
not put the directory it runs in on ``sys.path`` by itself."""


async def publish(
    settings: Settings, codec: AvroCodec, events: list[tuple[str, dict[str, Any]]]
) -> None:
    """Publish ``(event type, record)`` pairs as an edge would (keyed by store, or customer)."""
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = []
        for event, record in events:
            key = (
                store_key(record["store_id"])
                if "store_id" in record
                else record["customer_id"].encode()
            )
            futures.append(
                await producer.send(EVENT_TOPICS[event].name, codec.encode(event, record), key=key)
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def running(
    consumer: Consumer,
    settings: Settings,
    db_url: str,
    *,
    listen: tuple[str, int] | None = None,
    batch_size: int | None = None,
) -> AsyncIterator[ConsumerService]:
    """A consumer service running as a task for the duration of the block; with ``listen``,
    serving its HTTP API there."""
    if listen is not None:
        settings = settings.model_copy(update={"consumer_listen": f"{listen[0]}:{listen[1]}"})
    service = ConsumerService(consumer, settings, RunnerConfig(db_url, batch_size))
    task = asyncio.create_task(service.run(serve_http=listen is not None))
    try:
        yield service
    finally:
        service.request_stop()
        await asyncio.wait_for(task, timeout=60)


async def wait_until(
    condition: Callable[[], bool], *, timeout: float = 60, what: str = "condition"
) -> None:
    """Poll ``condition`` (may query a database) until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


def cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``tillstream ARGS`` (``dlq show``, ``dlq replay``...) against the broker at ``bootstrap``."""
    return run_tillstream(*args, env={"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap}, timeout=120)


def scalar(db_url: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """One value from a fresh connection (what an operator would see); None while the
    consumer has not created its tables yet."""
    db = Database(db_url)
    try:
        row = db.fetchone(sql, params)
    except Exception as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            return None
        raise
    finally:
        db.close()
    return None if row is None else row[0]


class ConsumerProcess(Service):
    """``tillstream consume`` as operators run it: a separate process; started means ready."""

    def __init__(
        self,
        spec: str,
        bootstrap: str,
        db_url: str,
        workdir: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        port: int | None = None,
        cwd: Path = ROOT,
        command: tuple[str, ...] | None = None,
    ) -> None:
        """``cwd``: where it runs; ``command``: how (default ``python -m tillstream``; the
        installed ``tillstream`` script, :data:`TILLSTREAM_SCRIPT`, runs as a user's shell does)."""
        port = port or free_port()
        self.workdir = workdir
        super().__init__(
            f"consumer {spec}",
            ["consume", spec, "--db", db_url, *(args or [])],
            port,
            workdir / "consumer.log",
            {
                "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "TILLSTREAM_CONSUMER_LISTEN": f"127.0.0.1:{port}",
                **(env or {}),
            },
            cwd=cwd,
            own_session=False,
            **({"command": command} if command else {}),
        )

    def start(self, timeout: float = 60) -> ConsumerProcess:
        super().start()
        self.wait_ready(timeout)
        return self

    def stop(self, timeout: float = 60) -> int:
        return super().stop(timeout)
