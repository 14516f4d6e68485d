"""Floods of connections: half-sent requests are closed, tills are still served, and a log
line repeated by the flood is written once a minute, not once per connection."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.edge_support import EdgeProcess, dumps, sale_json
from tillstream.core.logs import RepeatedMessages
from tillstream.dev.ports import free_port

pytestmark = pytest.mark.usefixtures("kafka_topics")

READ_TIMEOUT = 3
"""The edge's TILLSTREAM_HTTP_READ_TIMEOUT_S in these tests (default 10)."""
SLOW = 2_500
"""Half-sent requests held at once: more than the edge's cap of 1,000 connections."""
STALLED = 20
"""Requests whose body stops half way."""
SALES = 30
HALF_A_HEADER = b"POST /v1/events HTTP/1.1\r\nHost: edge\r\nContent-Ty"
HALF_A_BODY = b"POST /v1/events HTTP/1.1\r\nHost: edge\r\nContent-Length: 100\r\n\r\n[{"

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def enough_files(count: int) -> None:
    """This test process may hold ``count`` sockets (its soft limit raised to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= count, "raise ulimit -n"


async def hold(port: int, count: int, sent: bytes) -> list[Conn]:
    """``count`` connections that sent ``sent`` and nothing more, opened 100 at a time."""
    held: list[Conn] = []

    async def one() -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(sent)
        await writer.drain()
        return reader, writer

    async with asyncio.timeout(120):
        for start in range(0, count, 100):
            held += await asyncio.gather(*(one() for _ in range(min(100, count - start))))
            await asyncio.sleep(0.05)
    return held


async def closed_by_server(conn: Conn, within: float) -> bool:
    """Whether the server closes ``conn`` (end of stream or reset) within ``within`` s."""
    reader, writer = conn
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):  # a stalled body's 400 may come first
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    finally:
        writer.close()
    return True


async def test_a_flood_of_half_sent_requests_is_closed_and_tills_still_post(
    kafka_broker: str, tmp_path: Path
) -> None:
    enough_files(SLOW + STALLED + 200)
    store = f"S-FL{uuid.uuid4().hex[:6]}"
    edge = EdgeProcess(
        store, kafka_broker, tmp_path, env={"TILLSTREAM_HTTP_READ_TIMEOUT_S": str(READ_TIMEOUT)}
    ).start()
    try:
        answers: list[int] = []

        async def till() -> None:
            # A fresh connection per sale: a till's next one comes while the flood is on.
            async with httpx.AsyncClient(
                base_url=edge.url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
            ) as http:
                for _ in range(SALES):
                    sale = dumps(sale_json(store))
                    answers.append((await http.post("/v1/events", content=sale)).status_code)
                    await asyncio.sleep(0.1)

        started = time.monotonic()
        flood = asyncio.gather(
            hold(edge.port, SLOW, HALF_A_HEADER), hold(edge.port, STALLED, HALF_A_BODY)
        )
        _, (slow, stalled) = await asyncio.gather(till(), flood)
        assert answers == [202] * SALES  # every sale durable while the flood was on
        # Every half-sent request is closed: the oldest to make room for newer ones at the
        # cap, the rest once READ_TIMEOUT has passed without the rest of their request.
        closed = await asyncio.gather(
            *(closed_by_server(c, READ_TIMEOUT + 60) for c in [*slow, *stalled])
        )
        assert all(closed), f"{closed.count(False)} connection(s) still open"
        took = time.monotonic() - started
        timed_out = edge.metric("tillstream_http_connections_closed_total", 'reason="read_timeout"')
        evicted = edge.metric("tillstream_http_connections_closed_total", 'reason="evicted"')
        assert evicted >= SLOW + STALLED - 1000  # the cap of 1,000 (TILLSTREAM_HTTP_MAX_...)
        assert timed_out >= STALLED  # a stalled body is never evicted: it is a request
        assert evicted + timed_out >= SLOW + STALLED
        assert edge.metric("tillstream_http_connections") <= 2  # the metrics request's own
        # The edge said so in a few lines, not in one per connection.
        said = [json.loads(line) for line in edge.log().splitlines() if line.startswith("{")]
        guard = [line["msg"] for line in said if line["logger"] == "tillstream.core.http_guard"]
        assert 2 <= len(guard) <= 6, guard
        assert any("no complete request headers within 3s" in m for m in guard), guard
        assert any("request body stalled for 3s" in m for m in guard), guard
        assert any("connection limit (1000) reached" in m for m in guard), guard
        print(f"{SLOW + STALLED} held, {evicted:.0f} evicted, {timed_out:.0f} timed out, all "
              f"closed {took:.1f}s after the first; {len(guard)} guard log line(s)")  # fmt: skip
    finally:
        edge.kill()


ACCEPT_FLOOD = """
import asyncio, resource, sys
from tillstream.core.logs import configure_logging

configure_logging("INFO", json_lines=True)  # as every service starts

async def main() -> None:
    held = []
    server = await asyncio.start_server(
        lambda r, w: held.append(w), "127.0.0.1", int(sys.argv[1]), backlog=100
    )
    resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
    print("listening", flush=True)
    await asyncio.sleep(float(sys.argv[2]))

asyncio.run(main())
"""


def test_accept_errors_at_the_open_files_limit_are_logged_once() -> None:
    """asyncio logs every accept() refused for want of a descriptor, with a traceback: at
    the file limit, hundreds a second (about a thousand lines, half a megabyte, in the 3 s of
    this test without the filter).
    The services' logging lets the first through and counts the rest."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", ACCEPT_FLOOD, str(port), "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients = []
    try:
        assert server.stdout is not None and server.stdout.readline() == "listening\n"
        for _ in range(120):  # 48 descriptors: the rest wait in the accept queue (100)
            clients.append(socket.create_connection(("127.0.0.1", port), 5))
        _, err = server.communicate(timeout=60)
    finally:
        server.kill()
        for client in clients:
            client.close()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    accept = [line for line in lines if "out of system resource" in line["msg"]]
    assert len(accept) == 1, f"{len(accept)} lines, {len(err)} bytes"
    assert "Too many open files" in accept[0]["exc"]


def test_a_repeated_message_is_let_through_once_an_interval_then_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    repeated = RepeatedMessages(interval=60, clock=lambda: now[0])
    flood = logging.getLogger("tests.flood")
    flood.addFilter(repeated)
    try:
        with caplog.at_level(logging.INFO, logger="tests.flood"):
            for second in range(100):  # each a second, about another client
                now[0] = second
                flood.warning("closed a connection from %s", f"10.0.0.{second}")
                flood.info("another message, counted apart")
            repeated.report()  # at 99 s: the count of 1 to 59 went with the line of 60
            now[0] = 200
            repeated.report()  # the interval from 60 has ended: its count
    finally:
        flood.removeFilter(repeated)
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    counted = " [repeated {} more time(s) within 60s, not logged]"
    assert said == [
        ("WARNING", "closed a connection from 10.0.0.0"),
        ("INFO", "another message, counted apart"),
        ("WARNING", "closed a connection from 10.0.0.60" + counted.format(59)),
        ("INFO", "another message, counted apart" + counted.format(59)),
        ("WARNING", "closed a connection from 10.0.0.60" + counted.format(39)),
        ("INFO", "another message, counted apart" + counted.format(39)),
    ]
