"""``python -m bench [--quick] [--only STAGE ...]``: run the stages, print a table and write
``bench/results.json``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.env import BenchEnv, machine
from bench.stages import STAGES

RESULTS = Path(__file__).resolve().parent / "results.json"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and events (~1 min)")
    parser.add_argument("--only", nargs="+", choices=STAGES, help="run only these stages")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file")
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="RESULTS",
        help="print RESULTS as a Markdown table, run nothing",
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    console = Console() if sys.stdout.isatty() else Console(width=160)
    env = BenchEnv(quick=args.quick)
    results: dict[str, Any] = {
        "machine": machine(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
    }
    try:
        env.start(say=console.print)
        for name in args.only or STAGES:
            console.print(f"bench: {name} ...")
            started = time.perf_counter()
            stage = importlib.import_module(f"bench.stages.{name}")
            results[name] = asyncio.run(stage.run(env))
            results[name]["seconds"] = round(time.perf_counter() - started, 1)
            args.out.write_text(json.dumps(results, indent=2) + "\n")  # progress survives a crash
    finally:
        env.stop()
    console.print(table(results))
    console.print(f"bench: results in {args.out}")


COLUMNS = ("stage", "figure", "tillstream", "reference", "ratio (median, min-max)", "target")


def rows(results: dict[str, Any]) -> Iterator[tuple[str, ...]]:
    """One row per figure of every stage that ran, in stage order."""
    for name in STAGES:
        stage = results.get(name)
        if not stage:
            continue
        verdict = "" if stage["met"] is None else (": met" if stage["met"] else ": NOT met")
        for figure, value in stage["figures"].items():
            ref = stage["reference"]["figures"].get(figure)
            r = stage["ratio"].get(figure)
            yield (
                name,
                figure,
                _fmt(value),
                _fmt(ref) if ref else "-",
                f"{r['median']} ({r['min']}-{r['max']})" if r and r.get("median") else "-",
                f"{stage['target']}{verdict}",
            )


def table(results: dict[str, Any]) -> Table:
    out = Table(title=f"tillstream benchmarks ({results['mode']}, {results['machine']['cpu']})")
    for column in COLUMNS:
        out.add_column(column)
    for row in rows(results):
        out.add_row(*row)
    return out


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown table (the README's performance section)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    return "\n".join(lines)


def _fmt(figure: dict[str, Any]) -> str:
    if figure.get("min") is None:
        return f"- {figure['unit']}"
    low, high = figure["min"], figure["max"]
    return f"{figure['median']:,.1f} {figure['unit']} ({low:,.0f}-{high:,.0f})"


if __name__ == "__main__":
    main()
