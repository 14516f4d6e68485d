"""Services as child processes, for the demo, chaos runs, benchmarks and tests: started as
operators start them (the CLI, by default), logging to a file, watched through a health
endpoint, stopped with SIGTERM (then SIGKILL), or killed as a crash would end them.

The environment of a child is the parent's without its ``TILLSTREAM_*`` settings
(:func:`clean_environment`): a developer's shell never leaks into what a test or the demo
configures.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from tillstream.core.settings import ENV_PREFIX

TILLSTREAM = (sys.executable, "-m", "tillstream")
"""The ``tillstream`` command of this interpreter (default :attr:`Service.command`)."""


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without ``TILLSTREAM_*`` settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(extra)
    return env


def run_tillstream(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``tillstream ARGS`` run to its end, as an operator runs a command: in
    :func:`clean_environment` plus ``env``; stdout and stderr captured as text."""
    return subprocess.run(
        [*TILLSTREAM, *args],
        env=clean_environment(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


class ServiceError(RuntimeError):
    pass


@dataclass
class Service:
    """One command running in the background, logging to a file (``tillstream ARGS`` unless
    ``command`` says otherwise)."""

    name: str
    args: list[str]
    port: int
    """Where it listens on 127.0.0.1 (:attr:`url`, what :meth:`wait_ready` asks)."""
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    """Added to :func:`clean_environment`."""
    ready_path: str = "/readyz"
    """What :meth:`wait_ready` waits for by default (an edge cut off from Kafka is not ready,
    yet takes events: wait for ``/healthz`` where taking events is what matters)."""
    command: tuple[str, ...] = TILLSTREAM
    cwd: Path | None = None
    own_session: bool = True
    """In a session of its own, Ctrl-C in the parent's terminal does not reach it (the demo
    handles Ctrl-C and stops its services in order); :meth:`kill` ends its process group."""
    tls: ssl.SSLContext | None = None
    """It serves HTTPS: :meth:`wait_ready` connects with this context (trusted CAs, and a
    client certificate where it asks for one)."""
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def listen(self) -> str:
        """``127.0.0.1:PORT``, for ``--listen`` or ``TILLSTREAM_*_LISTEN``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Service:
        """Start it (a second time after :meth:`stop`: the log is appended to)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.command, *self.args],
            env=clean_environment(**self.env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            start_new_session=self.own_session,
        )
        return self

    def wait_ready(self, timeout: float = 60, path: str | None = None) -> None:
        """Until ``path`` (default :attr:`ready_path`) answers 200 (``/healthz``: alive,
        though maybe not ready); :class:`ServiceError` if it exits or the time runs out."""
        path = path or self.ready_path
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited; see {self.log_path}:\n{self.tail()}")
            try:
                answer = httpx.get(f"{self.url}{path}", timeout=1, verify=self.tls or True)
                if answer.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise ServiceError(
            f"{self.name} not ready within {timeout:.0f}s; see {self.log_path}:\n{self.tail()}"
        )

    def log(self) -> str:
        """Everything it logged (all its runs)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug would end it (fault injection)."""
        if self.proc is not None and self.proc.poll() is None:
            if self.own_session:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
            self.proc.wait()
        self._close_log()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code (0: never started)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()
        return self.proc.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
