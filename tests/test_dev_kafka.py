"""``tillstream dev kafka`` beside another broker: one data directory has one broker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tillstream.core.kafka import make_admin
from tillstream.core.settings import Settings
from tillstream.dev.ports import free_port

CLI = [sys.executable, "-m", "tillstream"]


def _dev_kafka(kafka_libs: Path, data: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "TILLSTREAM_CACHE_DIR": str(kafka_libs.parent.parent)}
    return subprocess.Popen(
        [*CLI, "dev", "kafka", "--port", str(port), "--data", str(data)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen[str], timeout: float = 90) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    output = ""
    while "Kafka ready" not in output and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        output += line
    assert "Kafka ready" in output, output
    return output


def _java_cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


async def _topics(port: int) -> set[str]:
    admin = make_admin(Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}"))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def test_second_dev_kafka_on_one_data_dir_refuses_and_the_first_keeps_working(
    kafka_libs: Path, tmp_path: Path
) -> None:
    data, first_port, second_port = tmp_path / "data", free_port(), free_port()
    first = _dev_kafka(kafka_libs, data, first_port)
    try:
        _wait_ready(first)
        config_before = (data / "server.properties").read_bytes()
        second = subprocess.run(
            [*CLI, "dev", "kafka", "--port", str(second_port), "--data", str(data)],
            env={**os.environ, "TILLSTREAM_CACHE_DIR": str(kafka_libs.parent.parent)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1, second.stdout + second.stderr
        message = second.stderr
        assert f"a Kafka broker is already running on {data}" in message
        assert f"127.0.0.1:{first_port}" in message
        assert f"export TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{first_port}" in message
        assert "--data OTHER_DIR" in message
        assert "Traceback" not in message and "exited with code" not in message
        pid = re.search(r"pid (\d+)", message)
        assert pid is not None, message
        assert "kafka.Kafka" in _java_cmdline(int(pid.group(1)))  # the first one's broker
        # Nothing of the first broker was touched, and it still answers.
        assert (data / "server.properties").read_bytes() == config_before
        assert isinstance(asyncio.run(_topics(first_port)), set)
    finally:
        first.send_signal(signal.SIGTERM)
        rest, _ = first.communicate(timeout=60)
    assert first.returncode == 0, rest
    assert "Kafka stopped." in rest


def test_dev_kafka_refuses_a_data_dir_whose_broker_outlived_its_starter(
    kafka_libs: Path, tmp_path: Path
) -> None:
    """A `dev kafka` SIGKILLed leaves its broker running: Kafka's own lock still tells."""
    data, port = tmp_path / "data", free_port()
    starter = _dev_kafka(kafka_libs, data, port)
    _wait_ready(starter)
    children = Path(f"/proc/{starter.pid}/task/{starter.pid}/children").read_text().split()
    java = int(children[0])
    starter.kill()
    starter.wait(10)
    try:
        config_before = (data / "server.properties").read_bytes()
        second = subprocess.run(
            [*CLI, "dev", "kafka", "--port", str(free_port()), "--data", str(data)],
            env={**os.environ, "TILLSTREAM_CACHE_DIR": str(kafka_libs.parent.parent)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"(pid {java}, 127.0.0.1:{port})" in second.stderr
        assert (data / "server.properties").read_bytes() == config_before
        assert isinstance(asyncio.run(_topics(port)), set)
    finally:
        os.kill(java, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{java}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def test_dev_kafka_on_a_busy_port_says_so(kafka_libs: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*CLI, "dev", "kafka", "--port", str(port), "--data", str(tmp_path / "data")],
            env={**os.environ, "TILLSTREAM_CACHE_DIR": str(kafka_libs.parent.parent)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in result.stderr
    # Refused before it said it was starting, and before it wrote anything.
    assert "Starting Kafka" not in result.stdout, result.stdout
    assert not (tmp_path / "data" / "server.properties").exists()


def test_dev_kafka_without_java_says_so_before_starting(kafka_libs: Path, tmp_path: Path) -> None:
    """The jars are cached (no Maven needed): the Java check comes first all the same."""
    no_java = tmp_path / "bin"
    no_java.mkdir()
    result = subprocess.run(
        [*CLI, "dev", "kafka", "--port", str(free_port()), "--data", str(tmp_path / "data")],
        env={
            **os.environ,
            "TILLSTREAM_CACHE_DIR": str(kafka_libs.parent.parent),
            "PATH": str(no_java),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Java 17 or newer is needed to run Kafka and was not found" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "Starting Kafka" not in result.stdout, result.stdout
