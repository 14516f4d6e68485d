"""Free local ports for the services a developer, test or benchmark starts."""

from __future__ import annotations

import random
import socket

_LISTEN_PORTS = range(20_000, 32_000)
"""Below Linux's ephemeral range (32768-60999): a port picked here cannot be taken, between
the pick and the bind, by an outgoing connection that the kernel numbered itself."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    for _ in range(50):
        port = random.choice(_LISTEN_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # the range is crowded: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
