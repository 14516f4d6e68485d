"""``make demo`` and ``make test`` on a fresh clone start by installing the venv: the first
screen says what is happening and how long it takes, and pip's own progress shows, instead
of a minute and a half of silence."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _planned(target: str) -> list[str]:
    """What ``make TARGET`` would run on a clone without a venv (``-n``: nothing runs)."""
    done = subprocess.run(
        ["make", "-n", "-B", "VENV=/nonexistent-venv", target],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.splitlines()


def test_the_first_install_says_what_it_does_and_shows_progress() -> None:
    for target in ("demo", "test"):
        lines = _planned(target)
        said = next(i for i, line in enumerate(lines) if "Setting up /nonexistent-venv" in line)
        assert "about 2 minutes the first time" in lines[said]
        install = next(
            i for i, line in enumerate(lines) if "pip install" in line and '-e ".[dev]"' in line
        )
        assert said < install  # said before the wait, not after
        assert "--quiet" not in lines[install] and " -q" not in lines[install]
