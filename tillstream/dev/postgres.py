"""A throwaway PostgreSQL server on loopback (Debian's ``postgresql`` package), for the tests
and the benchmarks, as ``devkafka`` is for Kafka."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from tillstream.dev.ports import free_port


class PostgresUnavailable(RuntimeError):
    pass


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found: apt-get install postgresql "
        "(or set POSTGRES_URL to an existing server)"
    )


class PostgresServer:
    """initdb + pg_ctl in a temporary directory, trust auth, loopback only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = _bin_dir()
        self.port = free_port()
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.root, "postgres")
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PostgresUnavailable(f"{args[0]} failed: {done.stderr or done.stdout}\n{tail}")

    def start(self) -> None:
        """Create the cluster on first start; later starts reuse its data (a restart)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.data.exists():
            self._run(
                str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                "--auth=trust", "--no-sync", "-E", "UTF8",
            )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate`` is a crash: no shutdown checkpoint)."""
        if self.data.exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
