"""One local broker per data directory: who already runs on it, found before touching it.

Two brokers on one data directory cannot both work: the second would rewrite the first's
``server.properties``, fail on Kafka's own log-directory lock, and leave the first timing
out. So a :class:`~tillstream.dev.broker.LocalKafka` holds :class:`DataDirLock` (an ``flock``
on ``tillstream.lock``, which records the broker's pid and port) for as long as it owns the
directory, and also checks Kafka's own lock (``logs/.lock``), which a broker left running by
a killed parent still holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LOCK_FILE = "tillstream.lock"
KAFKA_LOCK = Path("logs") / ".lock"


@dataclass(frozen=True)
class Holder:
    """The process that already runs a broker on a data directory (what is known of it)."""

    pid: int | None
    port: int | None


class DataDirLock:
    """An exclusive ``flock`` on a data directory, released on :meth:`release` or exit."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> Holder | None:
        """Take the lock (None), or say who holds it. Never changes the holder's record."""
        if self._file is not None:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self.path.open("a+")  # "a+": opening must not truncate the holder's record
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = _parse(file.read())
            file.close()
            return holder
        self._file = file
        return None

    def record(self, pid: int, port: int) -> None:
        """Write who runs here, for a second broker's refusal to name."""
        if self._file is None:
            return
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps({"pid": pid, "port": port}))
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.truncate(0)
            self._file.close()  # closing drops the flock
            self._file = None


def kafka_holder(data_dir: Path) -> Holder | None:
    """Who holds Kafka's own log-directory lock, if another process does (a broker still
    running after whatever started it was killed)."""
    lock = data_dir / KAFKA_LOCK
    if not lock.exists():
        return None
    with lock.open("a") as file:
        try:
            # Kafka locks with Java's FileChannel.tryLock: a POSIX record lock, as lockf takes.
            fcntl.lockf(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return Holder(_posix_lock_pid(lock), _configured_port(data_dir))
        fcntl.lockf(file, fcntl.LOCK_UN)
    return None


def _parse(text: str) -> Holder:
    try:
        data = json.loads(text)
        return Holder(int(data["pid"]), int(data["port"]))
    except (ValueError, KeyError, TypeError):
        return Holder(None, None)  # still starting: nothing recorded yet


def _posix_lock_pid(path: Path) -> int | None:
    """The pid holding a POSIX lock on ``path``, from Linux's /proc/locks (else None)."""
    inode = os.stat(path).st_ino
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        # "1: POSIX  ADVISORY  WRITE 12345 fd:01:1234567 0 EOF"
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "POSIX" and fields[5].rsplit(":", 1)[-1] == str(inode):
            with contextlib.suppress(ValueError):
                return int(fields[4])
    return None


def _configured_port(data_dir: Path) -> int | None:
    """The PLAINTEXT port in the data directory's ``server.properties`` (read, never written)."""
    with contextlib.suppress(OSError, ValueError):
        for line in (data_dir / "server.properties").read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "advertised.listeners":
                for listener in value.split(","):
                    if listener.startswith("PLAINTEXT://"):
                        return int(listener.rsplit(":", 1)[1])
    return None
