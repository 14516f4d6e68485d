"""``tillstream demo`` (``make demo``) as a new user runs it, without a terminal: a broker of
its own, edges, the three consumers, simulated tills, and a summary showing events flowing
through every consumer."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tillstream.dev.processes import clean_environment


def test_the_demo_runs_end_to_end_and_summarises() -> None:
    env = clean_environment()
    if "TILLSTREAM_CACHE_DIR" in os.environ:
        env["TILLSTREAM_CACHE_DIR"] = os.environ["TILLSTREAM_CACHE_DIR"]
    done = subprocess.run(
        [sys.executable, "-m", "tillstream", "demo", "--duration", "15", "--seed", "1",
         "--stores", "2", "--rate", "40"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "/metrics" in out  # every service's metrics address is printed
    assert re.search(r"ingest S001=\d+/s S002=\d+/s", out)  # plain periodic lines
    sent = re.search(
        r"tills sent ([\d,]+) events \(([\d,]+) as POSLog files\): ([\d,]+) accepted", out
    )
    assert sent, out
    assert int(sent[1].replace(",", "")) > 200 and int(sent[2].replace(",", "")) > 10
    for consumer in ("erp", "crm", "analytics"):
        applied = re.search(rf"{consumer}\s+applied ([\d,]+) records, lag 0, dead letters 0", out)
        assert applied and int(applied[1].replace(",", "")) > 100, out[-2000:]
    for store in ("S001", "S002"):
        assert re.search(
            rf"{store}: [\d,]+ events accepted, [\d,]+ receipts today, sales [\d,.]+ EUR", out
        )
