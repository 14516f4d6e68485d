"""What the README and docs/ say of the code, checked against it: counts of built-ins,
topics and databases, the services of the deployment, what ``make`` installs, and the page
that walks through a deployment by hand."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tillstream.core.topics import ALL_TOPICS, STORE_TOPICS
from tillstream_consumers.runtime.loader import BUILTIN

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = {p.name: p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}
NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
           "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}  # fmt: skip
CLAIMS = {
    r"built-ins": len(BUILTIN),
    r"store topics": len(STORE_TOPICS),
    r"(?:consumer services|head-office consumers|consumers)": len(BUILTIN),
    r"topics(?! on| of| and)": len(ALL_TOPICS),
}
"""What a number word in front of these words must be (``the five store topics``). Plain
``topics`` counts the project's topics only where no qualifier follows (``three topics``
of one consumer read say so)."""


def _first_screen() -> str:
    return README.split("## ", 1)[0]


def test_counted_claims_match_the_code() -> None:
    wrong = []
    for name, text in {"README.md": README, **DOCS}.items():
        flat = " ".join(text.split())
        for words, count in CLAIMS.items():
            pattern = rf"\bthe ({'|'.join(NUMBERS)}) {words}"
            for found in re.finditer(pattern, flat, flags=re.I):
                if NUMBERS[found[1].lower()] != count:
                    wrong.append(f"{name}: '{found[0]}' (the code has {count})")
    assert not wrong, "\n".join(wrong)


def test_deploy_doc_counts_the_databases_postgres_creates() -> None:
    created = (ROOT / "deploy/compose/postgres/init-databases.sql").read_text()
    databases = len(re.findall(r"CREATE DATABASE", created, flags=re.I))
    said = re.search(r"owning the (\w+) databases", DOCS["deploy.md"])
    assert said and NUMBERS[said[1]] == databases


def test_the_readme_deployment_names_every_hq_consumer() -> None:
    hq = yaml.safe_load((ROOT / "deploy/compose/hq.yaml").read_text())
    consumers = [
        name for name, s in hq["services"].items() if "consume" in (s.get("command") or [])
    ]
    assert sorted(consumers) == sorted(BUILTIN)
    paragraph = " ".join(README.split("## Deployment", 1)[1].split("```", 1)[0].split())
    words = {
        "erp": "ERP",
        "crm": "CRM",
        "analytics": "analytics",
        "audit": "sales-audit",
        "fleet": "fleet",
    }
    assert all(words[c] in paragraph for c in consumers), paragraph


def test_the_first_screen_says_what_make_installs() -> None:
    """PostgreSQL, Prometheus and Chromium come with ``make test`` (its test-deps), not with
    ``make demo``: the first screen says so, and the Makefile does so."""
    screen = " ".join(_first_screen().split())
    assert "make demo" in screen and "make test" in screen
    claim = re.search(r"`make test` also installs ([^)]*)", screen)
    assert claim and all(p in claim[1] for p in ("PostgreSQL", "Prometheus", "Chromium"))
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\btest-deps\b", makefile, flags=re.M)
    assert not re.search(r"^demo: .*\btest-deps\b", makefile, flags=re.M)
    for package in ("postgresql", "prometheus", "chromium"):
        assert package in makefile.split("TEST_PACKAGES =", 1)[1].split("test-deps:", 1)[0]


def test_the_by_hand_page_is_linked_from_the_readme() -> None:
    assert "(docs/by-hand.md)" in README
