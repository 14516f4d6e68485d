"""``tillstream simulate --edge URL`` when the edges do not take the events: it says why at
once (the first failure) and at the end (events per reason), and it ends at --duration
(plus the tills' settling time) however the edges answer, or if they never do."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tillstream.dev.ports import free_port
from tillstream.dev.processes import run_tillstream
from tillstream.simulate.driver import SETTLE_SECONDS

DURATION = 3
STARTING = 15
"""Seconds a ``tillstream`` process may take to start and to end on a busy 2-core machine."""


async def _simulate(edge: str) -> tuple[float, int, str, str]:
    """``(seconds it took, exit code, stdout, stderr)``."""
    started = time.monotonic()
    done = await asyncio.to_thread(
        run_tillstream,
        "simulate", "--stores", "1", "--tills", "2", "--rate", "40", "--duration", str(DURATION),
        "--seed", "3", "--edge", edge,
        timeout=120,
    )  # fmt: skip
    return time.monotonic() - started, done.returncode, done.stdout, done.stderr


async def test_no_edge_listening_is_said_at_once_and_the_run_ends_on_time() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    took, code, out, err = await _simulate(url)
    assert code == 1, out + err
    # Said at once, while the tills still retry; then as the reason of what failed.
    unreachable = f"{url}/v1/events: unreachable (ConnectError"
    first = next(line for line in err.splitlines() if line.startswith("first failure: "))
    assert first.startswith(f"first failure: S001: {unreachable}")
    assert first.endswith("(retrying)")
    assert err.index(first) < err.index("[    5s]")  # before the first progress line
    per_reason = [line for line in err.splitlines() if line.startswith("not delivered: ")]
    assert per_reason and all(unreachable in line for line in per_reason), err
    assert out.splitlines()[-1].startswith("simulate: stores=1 sent=")
    assert took < DURATION + SETTLE_SECONDS + STARTING, err


async def test_another_stores_edge_names_its_refusal(edge_factory: Any) -> None:
    edge = edge_factory("S002")
    took, code, out, err = await _simulate(edge.url)
    assert code == 1, out + err
    refusal = "store_id: this edge serves store 'S002' only; the event names another"
    assert f"first failure: S001: {edge.url}/v1/" in err
    assert refusal in err.split("first failure: ")[1].splitlines()[0]
    per_reason = [line for line in err.splitlines() if line.startswith("not delivered: ")]
    assert per_reason and any(refusal in line for line in per_reason), err
    summary = dict(pair.split("=") for pair in out.splitlines()[-1].split()[1:])
    failed = int(summary["failed"])
    assert failed > 0 and failed == sum(int(line.split()[2]) for line in per_reason)
    # Nothing counted as taken: the POSLog till's documents (answered 202) had every
    # transaction set aside by the other store's edge, and say so.
    assert summary["accepted"] == "0", out + err
    assert any(f"{edge.url}/v1/poslog: 202 set aside: " in line for line in per_reason), err
    assert took < DURATION + SETTLE_SECONDS + STARTING, err


@pytest.fixture
def silent_edge() -> Iterator[str]:
    """A loopback port that takes connections and never answers (a hung edge)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # the kernel completes the handshakes; nothing reads or answers
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


async def test_an_edge_that_never_answers_does_not_hold_the_run(silent_edge: str) -> None:
    took, code, out, err = await _simulate(silent_edge)
    assert code == 1, out + err
    assert "not answered before the run ended" in err
    assert took < DURATION + SETTLE_SECONDS + STARTING, err
