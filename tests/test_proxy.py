"""The uplink proxy that cuts a store off from Kafka (chaos runs and the edge's master-data
tests): once cut, nothing gets through, not even a connection that was being opened."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from chaos.proxy import Proxy
from tillstream.dev.ports import free_port


class EchoServer:
    """A target on loopback that sends back what it gets."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(client,), daemon=True).start()

    @staticmethod
    def _echo(client: socket.socket) -> None:
        with client:
            try:
                while data := client.recv(4096):
                    client.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()


def through(port: int) -> bool:
    """Whether a fresh connection to ``port`` reaches the echo server."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"ping")
            return s.recv(4) == b"ping"
    except OSError:
        return False


def dead(connection: socket.socket) -> bool:
    """Whether an open connection no longer carries anything (reset or closed)."""
    try:
        connection.sendall(b"ping")
        return connection.recv(4) == b""
    except OSError:
        return True


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def test_a_cut_closes_open_connections_and_refuses_new_ones(echo: EchoServer) -> None:
    proxy = Proxy(free_port(), echo.port)
    proxy.start()
    try:
        assert through(proxy.listen_port)
        open_one = socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=2)
        open_one.sendall(b"ping")
        assert open_one.recv(4) == b"ping"
        proxy.cut()
        assert dead(open_one)
        assert not through(proxy.listen_port)
        proxy.restore()
        assert through(proxy.listen_port)
    finally:
        proxy.close()


class SlowUplink(Proxy):
    """Connecting upstream waits until the test lets it: a cut lands in between."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        super().__init__(listen_port, target_port)
        self.connecting = threading.Event()
        self.go_on = threading.Event()

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.connecting.set()
        await asyncio.to_thread(self.go_on.wait, 10)
        return await super()._connect_upstream()


def test_a_connection_being_opened_when_the_uplink_is_cut_does_not_get_through(
    echo: EchoServer,
) -> None:
    proxy = SlowUplink(free_port(), echo.port)
    proxy.start()
    try:
        client = socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=2)
        assert proxy.connecting.wait(5)
        proxy.cut()
        proxy.go_on.set()  # the upstream connection completes after the cut
        assert dead(client)
    finally:
        proxy.go_on.set()
        proxy.close()
