"""The consumer example of docs/consumers.md runs as written: its test passes, and the
consumer runs under ``tillstream consume`` against the real broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from tests.consumer_support import (
    TILLSTREAM_SCRIPT,
    ConsumerProcess,
    publish,
    scalar,
    wait_until,
)
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.dev.samples import sample_sale

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "consumers.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def _write_example(where: Path, group: str = "visit-counter") -> None:
    consumer, test = _python_blocks()[:2]
    (where / "visits.py").write_text(consumer.replace('"visit-counter"', f'"{group}"'))
    (where / "test_visits.py").write_text(test)


def test_the_documented_consumer_is_the_shipped_example() -> None:
    shipped = (ROOT / "consumers" / "tillstream_consumers" / "example.py").read_text()
    assert _python_blocks()[0].strip() in shipped


def test_the_documented_test_passes(tmp_path: Path) -> None:
    _write_example(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_visits.py"],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_documented_consumer_and_its_test_pass_mypy_strict(tmp_path: Path) -> None:
    """As a user's project would check them: ``mypy --strict`` in a venv where tillstream
    is installed (its packages carry ``py.typed``), no configuration of ours."""
    _write_example(tmp_path)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("mypy")), "--strict", "visits.py", "test_visits.py"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "MYPY_CACHE_DIR": str(tmp_path / ".mypy_cache")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found in 2 source files" in done.stdout


async def test_the_documented_consumer_runs_under_tillstream_consume(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    group = f"visits-{uuid.uuid4().hex[:8]}"
    _write_example(tmp_path, group)
    customer = f"C-{uuid.uuid4().hex[:6]}"
    await publish(kafka_topics, codec, [("sale", sample_sale("S-DOC", customer=customer))] * 3)
    url = f"sqlite:///{tmp_path / 'visits.db'}"
    # As the page says: the installed command, run beside visits.py, no PYTHONPATH.
    process = ConsumerProcess(
        "visits:VisitCounter",
        kafka_topics.kafka_bootstrap_servers,
        url,
        tmp_path / "run",
        cwd=tmp_path,
        command=TILLSTREAM_SCRIPT,
    )
    process.start()
    try:
        query = "SELECT n FROM visits WHERE customer_id = ?"
        await wait_until(lambda: scalar(url, query, (customer,)) == 1, what="one visit")
        base = f"http://127.0.0.1:{process.port}"
        assert httpx.get(f"{base}/healthz").json()["consumer"] == group
        assert httpx.get(f"{base}/readyz").status_code == 200
        await wait_until(lambda: f'consumer="{group}"' in _lag_lines(base), what="lag metric")
        metrics = httpx.get(f"{base}/metrics").text
        applied = f'tillstream_consumer_records_total{{consumer="{group}",outcome="applied"'
        assert applied in metrics.replace(',topic="tillstream.sales"', "")
        assert f'tillstream_consumer_last_event_timestamp_seconds{{consumer="{group}"}}' in metrics
    finally:
        assert process.stop() == 0


def test_a_consumer_module_not_found_says_where_it_was_looked_for(tmp_path: Path) -> None:
    """Run in a directory without visits.py: the error names that directory, PYTHONPATH and
    what to do, and the command exits 2 (a usage error) before touching Kafka."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TILLSTREAM_", "PYTHON"))}
    done = subprocess.run(
        [*TILLSTREAM_SCRIPT, "consume", "visits:VisitCounter"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    error = " ".join(done.stderr.split())  # Click wraps nothing, but be safe
    assert f"no module 'visits' in the current directory {tmp_path}" in error
    assert "PYTHONPATH (not set)" in error
    assert "Run the command in the directory that holds visits.py" in error


def test_an_import_failing_inside_the_consumer_module_is_named(tmp_path: Path) -> None:
    (tmp_path / "visits.py").write_text("import no_such_dependency_xyz\n")
    done = subprocess.run(
        [*TILLSTREAM_SCRIPT, "consume", "visits:VisitCounter"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("TILLSTREAM_")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "ModuleNotFoundError: No module named 'no_such_dependency_xyz'" in done.stderr
    assert "current directory" not in done.stderr  # visits.py itself was found


def _lag_lines(base: str) -> str:
    text = httpx.get(f"{base}/metrics").text
    return "\n".join(
        line for line in text.splitlines() if line.startswith("tillstream_consumer_lag{")
    )
