"""Running consumer services in tests: in-process tasks, and producing store events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import EVENT_TOPICS, store_key
from tillstream.dev.ports import free_port
from tillstream_consumers.runtime.api import Consumer
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.runner import ConsumerService, RunnerConfig


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


@dataclass
class ConsumerProcess:
    """``tillstream consume`` as operators run it: a separate process."""

    spec: str
    bootstrap: str
    db_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ConsumerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TILLSTREAM_")}
        env.update(
            TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            TILLSTREAM_CONSUMER_LISTEN=f"127.0.0.1:{self.port}",
            **self.env,
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "consumer.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tillstream",
                "consume",
                self.spec,
                "--db",
                self.db_url,
                *self.args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"consumer exited: {self.log()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"consumer not ready within {timeout}s: {self.log()[-3000:]}")

    def log(self) -> str:
        path = self.workdir / "consumer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)
