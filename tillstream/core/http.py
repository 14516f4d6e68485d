"""The HTTP server every tillstream service embeds (uvicorn), and the ``/metrics`` response."""

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
    app: Any, host: str, port: int, *, tls: TlsFiles | None = None
) -> EmbeddedServer:
    options: dict[str, Any] = {}
    if tls is not None:
        options = {"ssl_certfile": tls.certfile, "ssl_keyfile": tls.keyfile}
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
