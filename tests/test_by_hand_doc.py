"""docs/by-hand.md run as a script, as a reader follows it: its ``sh`` blocks in order in one
shell, from a clone-like folder (the repository's files and its venv), against a real broker
it starts itself, loopback only. The ``text`` block under a ``sh`` block holds lines its
output must contain (``...`` stands for anything). Every process the page starts is stopped
by the page itself; the test checks that, and ends any it left."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tillstream.core.topics import ALL_TOPICS
from tillstream.dev.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "by-hand.md"
PORTS = (9092, 8080, 9401, 9402, 9403, 9404)
"""The ports the page uses, each replaced by a free one (the machine is shared)."""
SECONDS = 900
"""Most the whole page may take (the first run fetches Kafka's jars)."""


def blocks() -> list[tuple[str, str | None]]:
    """``(shell, expected output or None)`` for each ``sh`` block of the page, in order."""
    found = re.findall(r"```(sh|text)\n(.*?)```", DOC.read_text(), flags=re.S)
    pairs: list[tuple[str, str | None]] = []
    for kind, body in found:
        if kind == "sh":
            pairs.append((body, None))
        else:
            assert pairs and pairs[-1][1] is None, "a text block follows its sh block"
            pairs[-1] = (pairs[-1][0], body)
    return pairs


def _pattern(line: str) -> re.Pattern[str]:
    """A line of expected output: ``...`` stands for anything, spaces for any run of them
    (tables are padded to the terminal's width)."""
    parts = [re.escape(part) for part in line.strip().split("...")]
    return re.compile(".*?".join(parts).replace(r"\ ", r"\s+"))


def _clone(where: Path) -> Path:
    """The repository's tracked files as they are now, and its venv (linked, as built)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    clone = where / "clone"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    return clone


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _end_group(process: subprocess.Popen[bytes], broker_data: Path) -> None:
    """End whatever the page left running: its shell's process group (SIGTERM, then SIGKILL),
    and a broker it started (Java runs in a session of its own; the lock file names it)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    lock = broker_data / "tillstream.lock"
    with contextlib.suppress(OSError, ValueError, TypeError, ProcessLookupError):
        pid = int(json.loads(lock.read_text())["pid"])
        if "java" in Path(f"/proc/{pid}/cmdline").read_text():
            os.kill(pid, signal.SIGTERM)


def test_the_by_hand_page_runs_as_written(tmp_path: Path) -> None:
    pairs = blocks()
    assert len(pairs) >= 8
    ports = {old: free_port() for old in PORTS}
    script = ["set -euo pipefail"]
    for i, (shell, _) in enumerate(pairs):
        for old, new in ports.items():
            shell = re.sub(rf"\b{old}\b", str(new), shell)
        script += [f"echo '@@ block {i}'", shell]
    script.append("echo '@@ done'")
    clone = _clone(tmp_path)
    cache = {k: v for k, v in os.environ.items() if k == "TILLSTREAM_CACHE_DIR"}
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)), **cache}
    process = subprocess.Popen(
        ["bash", "-c", "\n".join(script)],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # one process group: everything the page starts
    )
    try:
        out, _ = process.communicate(timeout=SECONDS)
    finally:
        _end_group(process, clone / "by-hand" / "kafka-data")
    text = out.decode(errors="replace")
    assert process.returncode == 0 and "@@ done" in text, text[-4000:]
    outputs = re.split(r"^@@ block \d+\n", text.split("@@ done")[0], flags=re.M)[1:]
    assert len(outputs) == len(pairs)
    for i, ((_, expected), output) in enumerate(zip(pairs, outputs, strict=True)):
        if expected is None:
            continue
        for old, new in ports.items():
            expected = re.sub(rf"\b{old}\b", str(new), expected)
        for line in filter(None, (ln.strip() for ln in expected.splitlines())):
            assert _pattern(line).search(output), f"block {i}: no {line!r} in:\n{output[-3000:]}"
    # The page's topics are the project's, generated from them.
    created = [line for line in pairs[2][1].splitlines() if line]  # type: ignore[union-attr]
    assert created == [f"created  {t.name}" for t in ALL_TOPICS]
    # It stopped all it started: nothing listens on its ports any more.
    assert not [old for old, new in ports.items() if _listening(new)], "left running"
