"""``python -m chaos [--short] [--events N] [--stores N] [--seed N]``: a fault-injection run.

Stands up a 3-node Kafka cluster, PostgreSQL, an edge per store and the ERP (two
instances), CRM, analytics, sales audit and fleet consumers; sells the seeded plan's events
(with its till books and planted audit faults) through the edges while brokers, edges,
consumers and the database are killed and a store is cut off; then checks every stage
against the plan, the audit's flags against the planted ones and the fleet's silent edges
against the edges the faults took away. The last line is always::

    chaos: events=N lost=L duplicated=D wrong=W faults=F

and the exit status is 0 only if L, D and W are zero and no event was dead-lettered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from chaos.faults import Timing
from chaos.fleet import Watch
from chaos.plan import Plan
from chaos.rig import Rig
from chaos.run import Outcome, run
from tillstream.core.settings import Settings
from tillstream.dev.broker import resolve_jars


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m chaos", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="the CI version: small, quick")
    parser.add_argument("--events", type=int, help="events (default 1,000,000; short 20,000)")
    parser.add_argument("--stores", type=int, help="stores (default 4; short 3)")
    parser.add_argument("--seed", type=int, default=20261125, help="decides every event")
    parser.add_argument("--workdir", type=Path, help="keep data and logs here")
    args = parser.parse_args()
    events = args.events or (20_000 if args.short else 1_000_000)
    stores = args.stores or (3 if args.short else 4)
    if events < 1000 or stores < 2:
        parser.error("a run needs at least 1,000 events and 2 stores")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tillstream-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    plan = Plan.new(args.seed, stores, events)
    (workdir / "plan.json").write_text(json.dumps(plan.manifest(), indent=2) + "\n")

    def say(message: str) -> None:
        print(message, flush=True)

    # SIGTERM unwinds like Ctrl-C does, so the cluster, database and services are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    say(f"chaos: {events} events, {stores} stores, seed {args.seed}, workdir {workdir}")
    libs = resolve_jars(Settings().cache_dir, progress=say)
    rig = Rig(workdir, libs, plan, Watch.for_run(args.short), say)
    outcome: Outcome | None = None
    try:
        rig.start()
        timing = Timing.for_run(args.short)
        settle = 300.0 if args.short else 1800.0
        outcome = asyncio.run(run(rig, timing, say, settle_within=settle))
    finally:
        started = time.monotonic()
        rig.stop()
        say(f"chaos: everything stopped ({time.monotonic() - started:.0f}s)")
    assert outcome is not None  # run() returned, or its exception is on its way
    print_report(outcome, say)
    if outcome.ok and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not outcome.ok:
        say(f"chaos: logs and data kept in {workdir}")
    say(outcome.summary())
    sys.exit(0 if outcome.ok else 1)


def print_report(outcome: Outcome, say: Callable[[str], None]) -> None:
    say("")
    say("faults injected:")
    for fault in outcome.faults:
        say(f"  {fault.name:<16} {fault.seconds:5.0f}s  {fault.detail}")
    say("")
    say(f"{'stage':<10} {'expected':>9} {'lost':>6} {'dup':>6} {'wrong':>6} {'redeliv':>8}  note")
    for s in outcome.stages:
        say(
            f"{s.name:<10} {s.expected:>9} {s.lost:>6} {s.duplicated:>6} {s.wrong:>6} "
            f"{s.redelivered:>8}  {s.note}"
        )
    for s in outcome.stages:
        for line in s.details:
            say(f"  {s.name}: {line}")
    p = outcome.progress
    say("")
    say(
        f"tills: {p.accepted} events accepted, {p.refused} card-number events refused, "
        f"{p.given_up} given up, {p.wrongly_accepted} wrongly accepted; "
        f"dead letters: {outcome.dead_letters}; settled: {'yes' if outcome.settled else 'NO'}; "
        f"{outcome.seconds:.0f}s"
    )
    for note in outcome.notes:
        say(f"  ! {note}")


if __name__ == "__main__":
    main()
