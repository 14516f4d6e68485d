"""The embedded HTTP server's guard against connections that send no request: headers sent
by halves (slowloris), bodies that stall, more connections than the process has files.

uvicorn offers neither a header timeout (``timeout_keep_alive`` runs only between requests,
and any byte cancels it) nor a cap that spares the tills (``limit_concurrency`` answers 503
to whoever *sends a request* while too many connections are open: held connections would
get every till refused). So each connection of :class:`GuardedH11Protocol`

- gets ``read_timeout`` seconds to deliver a request's headers, counted from connecting or
  from its previous answer, however it trickles them; then, while its body is read, no
  pause longer than that (a pause the server makes, reading slower than it arrives, does not
  count). Otherwise it is closed;
- counts toward ``max_connections``: a connection over the cap makes room by closing the one
  that has waited longest for a request (idle, or headers half sent), never one whose
  request is being read or answered; when every connection is busy with a request, the
  newcomer is closed.

:func:`connection_cap` keeps the cap below the open-files limit (raised to its hard limit
first), so ``accept()`` never runs out of descriptors: asyncio would then log every failed
attempt, and take no connection at all until some close.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import resource
from typing import Any, ClassVar

import h11
from prometheus_client import Counter, Gauge
from uvicorn.protocols.http.h11_impl import H11Protocol

from tillstream.core.logs import REPEATED

log = logging.getLogger(__name__)
log.addFilter(REPEATED)  # one line a minute for a flood, with the number not logged

_UNLIMITED = 1_048_576  # Linux's own ceiling (fs.nr_open)
OWN_FILES = 128
"""Descriptors the process keeps for itself: databases, Kafka, logs, devices, threads."""

CONNECTIONS = Gauge(
    "tillstream_http_connections", "Connections open to this service's HTTP server."
)
CONNECTIONS_LIMIT = Gauge(
    "tillstream_http_connections_limit",
    "Connections this service's HTTP server keeps open at most (TILLSTREAM_HTTP_MAX_CONNECTIONS, "
    "lowered to fit the open-files limit).",
)
CONNECTIONS_CLOSED = Counter(
    "tillstream_http_connections_closed_total",
    "Connections the HTTP server closed itself, by reason: read_timeout (no complete request "
    "headers, or a body that stalled, in time), evicted (the longest waiting for a request, "
    "to make room at the cap), refused (at the cap with every connection busy).",
    ["reason"],
)


class ConnectionGuard:
    """The connections of one server and its limits (shared by its protocol instances)."""

    def __init__(self, read_timeout: float, max_connections: int) -> None:
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self._open: set[GuardedH11Protocol] = set()
        self._waiting: dict[GuardedH11Protocol, None] = {}
        """Connections waiting for a request, longest waiting first (a dict keeps order)."""
        CONNECTIONS_LIMIT.set(max_connections)

    def admit(self, conn: GuardedH11Protocol) -> bool:
        """Count a new connection in, making room if needed; False: it was closed."""
        if len(self._open) >= self.max_connections:
            oldest = next(iter(self._waiting), None)
            if oldest is None:
                log.warning(
                    "HTTP connection refused: all %d connections are busy with requests "
                    "(TILLSTREAM_HTTP_MAX_CONNECTIONS)",
                    self.max_connections,
                )
                self._close(conn, "refused")
                return False
            log.warning(
                "HTTP connection limit (%d) reached: closed the connection that waited "
                "longest for a request, to take a new one (a flood of connections?)",
                self.max_connections,
            )
            self.close(oldest, "evicted")
        self._open.add(conn)
        CONNECTIONS.set(len(self._open))
        return True

    def waiting(self, conn: GuardedH11Protocol, waiting: bool) -> None:
        """Whether ``conn`` waits for a request now (evictable) or has one in hand."""
        self._waiting.pop(conn, None)
        if waiting and conn in self._open:
            self._waiting[conn] = None  # at the end: the latest to start waiting

    def close(self, conn: GuardedH11Protocol, reason: str) -> None:
        """Close ``conn`` for ``reason`` (counted) and forget it."""
        self.forget(conn)
        self._close(conn, reason)

    def forget(self, conn: GuardedH11Protocol) -> None:
        self._waiting.pop(conn, None)
        self._open.discard(conn)
        CONNECTIONS.set(len(self._open))

    @staticmethod
    def _close(conn: GuardedH11Protocol, reason: str) -> None:
        CONNECTIONS_CLOSED.labels(reason).inc()
        conn.transport.close()


class _Phase(enum.Enum):
    HEADERS = "headers"
    """Waiting for a request, or for the rest of its headers."""
    BODY = "body"
    """Reading the request's body."""
    BUSY = "busy"
    """The request is in and being answered."""


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol under a :class:`ConnectionGuard` (see the module)."""

    guard: ClassVar[ConnectionGuard]
    _phase: _Phase | None = None
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.guard.admit(self):
            self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._phase is _Phase.BODY:
            self._arm()  # bytes came: the pause starts again
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.guard.forget(self)
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Follow the request's progress: h11 knows how far the client has got."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        phase = (
            _Phase.HEADERS
            if state is h11.IDLE
            else _Phase.BODY
            if state is h11.SEND_BODY
            else _Phase.BUSY
        )
        if phase is self._phase:
            return
        self._phase = phase
        self.guard.waiting(self, phase is _Phase.HEADERS)
        # Headers: one deadline, however the bytes trickle; a body: the longest pause.
        if phase is _Phase.BUSY:
            self._cancel()
        else:
            self._arm()

    def _arm(self) -> None:
        self._cancel()
        self._timer = self.loop.call_later(self.guard.read_timeout, self._expired)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._phase is _Phase.BUSY:
            return
        if self._phase is _Phase.BODY and self.flow.read_paused:
            self._arm()  # the server reads slower than the body comes: not the client's pause
            return
        # Two messages, each repeated by a flood of its own kind.
        if self._phase is _Phase.HEADERS:
            log.warning(
                "HTTP connection closed: no complete request headers within %gs from %s "
                "(TILLSTREAM_HTTP_READ_TIMEOUT_S; a slow client, or a flood)",
                self.guard.read_timeout,
                self._peer(),
            )
        else:
            log.warning(
                "HTTP connection closed: its request body stalled for %gs from %s "
                "(TILLSTREAM_HTTP_READ_TIMEOUT_S; a slow client, or a flood)",
                self.guard.read_timeout,
                self._peer(),
            )
        self.guard.close(self, "read_timeout")

    def _peer(self) -> str:
        """The client's address: IT finds a flooding device by it."""
        return f"{self.client[0]}:{self.client[1]}" if self.client else "an unknown address"


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    """The protocol class of one server (uvicorn's ``http`` option) under ``guard``."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})


def accept_burst(files: int) -> int:
    """Connections asyncio accepts at once (the listen backlog): small beside ``files``."""
    return max(16, min(2048, files // 32))


def open_files_limit() -> int:
    """The process's open-files limit, its soft limit first raised to the hard one (the soft
    one is often 1,024 for historical reasons; the hard one is what may be used)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # an unlimited hard limit the kernel refuses: keep it
            pass
    return _UNLIMITED if soft == resource.RLIM_INFINITY else soft


def connection_cap(wanted: int) -> tuple[int, int]:
    """(connections, listen backlog) within the open-files limit: room is kept for the
    process's own files and for the sockets in flight. A burst of accepts is a descriptor
    each before the guard sees it (asyncio admits it two turns of its loop later), and an
    evicted connection's descriptor closes a turn after that: four bursts at most."""
    files = open_files_limit()
    backlog = accept_burst(files)
    cap = max(16, min(wanted, files - OWN_FILES - 4 * backlog))
    if cap < wanted:
        log.warning(
            "HTTP connections capped at %d, not %d: the open-files limit is %d (raise it with "
            "'ulimit -n' or the service manager's LimitNOFILE)",
            cap,
            wanted,
            files,
        )
    return cap, backlog


def server_options(read_timeout: float, max_connections: int) -> dict[str, Any]:
    """uvicorn.Config options of a guarded server."""
    cap, backlog = connection_cap(max_connections)
    return {"http": guarded_protocol(ConnectionGuard(read_timeout, cap)), "backlog": backlog}
