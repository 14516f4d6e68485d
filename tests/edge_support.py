"""Running the edge service as operators do (a process), and building till payloads."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tillstream.core.records import jsonable
from tillstream.dev.ports import free_port
from tillstream.dev.samples import sample_payment, sample_sale, sample_stock_movement


def sale_json(store: str, **changes: Any) -> dict[str, Any]:
    return {"type": "sale", **jsonable(sample_sale(store)), **changes}


def payment_json(sale: dict[str, Any]) -> dict[str, Any]:
    record = sample_payment(
        {
            **sale,
            "occurred_at": sample_sale()["occurred_at"],
            "totals": {"net_amount": sale["totals"]["net_amount"]},
        }
    )
    return {"type": "payment", **jsonable(record), "sale_event_id": sale["event_id"]}


def stock_json(store: str, **changes: Any) -> dict[str, Any]:
    return {"type": "stock_movement", **jsonable(sample_stock_movement(store)), **changes}


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class EdgeProcess:
    store: str
    bootstrap: str
    workdir: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """Extra TILLSTREAM_* settings of this edge."""
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def outbox(self) -> Path:
        return self.workdir / "outbox.db"

    def start(self, timeout: float = 30) -> EdgeProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TILLSTREAM_")}
        env.update(TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS=self.bootstrap, TILLSTREAM_LOG_LEVEL="INFO")
        env.update(self.env)
        log = (self.workdir / "edge.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tillstream",
                "edge",
                "run",
                "--store",
                self.store,
                "--listen",
                f"127.0.0.1:{self.port}",
                "--outbox",
                str(self.outbox),
                *self.extra_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edge exited: {self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"edge not up within {timeout}s: {self.log()[-3000:]}")

    def log(self) -> str:
        path = self.workdir / "edge.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def metric(self, name: str, labels: str = "") -> float:
        """A metric's value from /metrics (sum over label sets matching ``labels``)."""
        total = 0.0
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {") and labels in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})")


def live_poslog(document: str) -> str:
    """A POSLog sample as a live till sends it: every date moved by whole days so the last
    one is yesterday (inside the edge's plausibility window)."""
    dates = [date(*map(int, m.groups())) for m in _DATE.finditer(document)]
    shift = datetime.now(UTC).date() - timedelta(days=1) - max(dates) if dates else timedelta(0)

    def moved(m: re.Match[str]) -> str:
        return (date(*map(int, m.groups())) + shift).isoformat()

    return _DATE.sub(moved, document)
