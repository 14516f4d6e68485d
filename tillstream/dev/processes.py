"""Services of the demo as child processes: started as operators start them (the CLI),
watched through their health endpoints, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx


class ServiceError(RuntimeError):
    pass


@dataclass
class Service:
    """One ``tillstream`` command running in the background, logging to a file."""

    name: str
    args: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"
    """What :meth:`wait_ready` waits for by default (an edge cut off from Kafka is not ready,
    yet takes events: wait for ``/healthz`` where taking events is what matters)."""
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TILLSTREAM_")}
        env.update(self.env)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tillstream", *self.args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the demo's terminal is the demo's to handle
        )
        return self

    def wait_ready(self, timeout: float = 60, path: str | None = None) -> None:
        """Until ``path`` (default :attr:`ready_path`) answers 200 (``/healthz``: alive,
        though maybe not ready)."""
        path = path or self.ready_path
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited; see {self.log_path}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}{path}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise ServiceError(f"{self.name} not ready within {timeout:.0f}s; see {self.log_path}")

    def tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug would end it (fault injection)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self._log is not None:
            self._log.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        return self.proc.returncode
