"""``tillstream demo`` (``make demo``) as a new user runs it, without a terminal: a broker of
its own, edges, the four consumers, simulated tills, and a summary showing events flowing
through every consumer, how the sales audit closed each store-day, and a price change
head office publishes while it runs reaching every store's edge."""

from __future__ import annotations

import os
import re

from tillstream.dev.processes import run_tillstream


def test_the_demo_runs_end_to_end_and_summarises() -> None:
    # The one setting kept from this environment: where the Kafka jars are cached.
    cache = {k: v for k, v in os.environ.items() if k == "TILLSTREAM_CACHE_DIR"}
    done = run_tillstream(
        "demo", "--duration", "15", "--seed", "1", "--stores", "2", "--rate", "40",
        env=cache, timeout=300,
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
    assert re.search(r"audit_flags=\d+", out)  # the audit's open flags, live
    for consumer in ("erp", "crm", "analytics", "audit"):
        applied = re.search(rf"{consumer}\s+applied ([\d,]+) records, lag 0, dead letters 0", out)
        assert applied and int(applied[1].replace(",", "")) > 100, out[-2000:]
    for store in ("S001", "S002"):
        assert re.search(
            rf"{store}: [\d,]+ events accepted, [\d,]+ receipts today, sales [\d,.]+ EUR", out
        )
        # Every store opened and closed its day; the audit read through its API says how
        # it closed: only what the simulator plants is flagged (gaps, over/short).
        closed = re.search(
            rf"{store} audit: \d{{4}}-\d\d-\d\d (closed-balanced|closed-unbalanced), "
            r"(\d+) open flags?(?: \(([^)]*)\))?\n",
            out,
        )
        assert closed, out[-2000:]
        kinds = {k.split()[0] for k in closed[3].split(", ")} if closed[3] else set()
        assert kinds <= {"receipt_gap", "over_short"}, closed[0]
        assert (closed[1] == "closed-balanced") == (closed[2] == "0"), closed[0]
    # Head office changed a chain price while the demo ran; both stores' edges serve it.
    changed = re.search(
        r"price change (\S+) (\d+\.\d\d) -> (\d+\.\d\d) EUR: served by 2/2 stores "
        r"after ([\d.]+) s \(S001 [\d.]+ s, S002 [\d.]+ s\)\n",
        out,
    )
    assert changed, out[-2000:]
    assert changed[2] != changed[3] and float(changed[4]) < 60
    assert re.search(r"planted: receipts refused by the edges \(.*\) keep their numbers", out)
    # The store sold only what it had: nothing below zero at head office, few SKUs low.
    stock = re.search(r"stock now \(ERP\): (\d+) store-SKUs, (\d+) at or below their reorder "
                      r"point, (\d+) below zero", out)  # fmt: skip
    assert stock, out[-2000:]
    assert int(stock[1]) == 40 and int(stock[3]) == 0 and int(stock[2]) <= 4, stock[0]
    assert re.search(r"audit: \d+ open flags? in all; of them sale/payment reconciliation", out)
    assert "NotLeaderForPartition" not in out + done.stderr  # topics led before producing
