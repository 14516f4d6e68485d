"""The HTTP server every tillstream service embeds (uvicorn, under the guard of
:mod:`tillstream.core.http_guard`), and the ``/metrics`` response."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from tillstream.core.http_guard import server_options
from tillstream.core.settings import HTTP_MAX_CONNECTIONS, HTTP_READ_TIMEOUT_S


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns the order of shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class TlsFiles:
    """HTTPS for an embedded server; with ``client_cafile``, mutual TLS."""

    certfile: Path
    keyfile: Path
    client_cafile: Path | None = None
    """Set: the handshake fails unless the client presents a certificate this CA signed."""


def embedded_server(
    app: Any,
    host: str,
    port: int,
    *,
    tls: TlsFiles | None = None,
    read_timeout: float = HTTP_READ_TIMEOUT_S,
    max_connections: int = HTTP_MAX_CONNECTIONS,
) -> EmbeddedServer:
    """``app`` served on ``host:port``: a client gets ``read_timeout`` seconds to send a
    request's headers (and to resume a stalled body), and ``max_connections`` are kept open
    at most (within the open-files limit, which this raises to its hard limit)."""
    options = server_options(read_timeout, max_connections)
    if tls is not None:
        options |= {"ssl_certfile": tls.certfile, "ssl_keyfile": tls.keyfile}
        if tls.client_cafile is not None:
            options.update(ssl_ca_certs=tls.client_cafile, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return EmbeddedServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            **options,
        )
    )


def metrics_response() -> Response:
    """The process's Prometheus metrics in the text exposition format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
