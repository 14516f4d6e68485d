"""Monitoring tests' helpers: the deploy/ files, the metric names the code exports, PromQL
selectors of an expression, and a real Prometheus server on loopback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from tillstream.dev.ports import free_port
from tillstream.dev.processes import Service

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = tuple(sorted((PROMETHEUS_DIR / "tests").glob("*_test.yml")))
"""The ``promtool test rules`` files: alerts_test.yml, audit_test.yml."""
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
SOURCE_DIRS = (ROOT / "producers", ROOT / "consumers", ROOT / "tillstream")

# Series that Prometheus or prometheus_client provide rather than tillstream's code.
BUILTIN_SERIES = frozenset({"up", "process_start_time_seconds"})

# What Grafana substitutes before a query reaches Prometheus: concrete values for the tests.
GRAFANA_VARIABLES = {
    "$__rate_interval": "30s",
    "$__interval": "15s",
    "$__range": "5m",
    "$store": ".*",
}


def tool(name: str) -> str:
    """Path of ``name`` (prometheus, promtool), or a failure that says how to install it."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(
            f"{name} is not installed: apt-get install prometheus (or `make prometheus`)"
        )
    return path


# -- metric names the code exports -------------------------------------------------------

_DEFINITION = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"")


def exported_series() -> set[str]:
    """Every series name the services expose, from the metric definitions in the source
    (prometheus_client adds ``_total`` to counters and ``_bucket/_sum/_count`` to
    histograms, ``_created`` to both)."""
    names: set[str] = set()
    for directory in SOURCE_DIRS:
        for path in directory.rglob("*.py"):
            for kind, name in _DEFINITION.findall(path.read_text()):
                if kind == "Counter":
                    base = name.removesuffix("_total")
                    names |= {f"{base}_total", f"{base}_created"}
                elif kind in ("Histogram", "Summary"):
                    suffixes = ("_sum", "_count", "_created") + (
                        ("_bucket",) if kind == "Histogram" else ()
                    )
                    names |= {name + s for s in suffixes}
                else:
                    names.add(name)
    return names


def recording_rules() -> set[str]:
    return {
        rule["record"]
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def panel_exprs() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL) of every panel target."""
    return [
        (name, panel["title"], target["expr"])
        for name, board in dashboards().items()
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def grafana_to_promql(expr: str) -> str:
    """``expr`` with Grafana's variables replaced (longest first: $__rate_interval...)."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


# -- PromQL selectors ----------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<matchers>\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\})
  | (?P<range>\[[^\]]*\])
  | (?P<number>\d[\w.]*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<space>\s+)
  | (?P<other>.)
    """,
    re.VERBOSE,
)
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count"}
_AGGREGATIONS |= {"count_values", "bottomk", "topk", "quantile"}
_KEYWORDS = _LABEL_LISTS | _AGGREGATIONS | {"bool", "and", "or", "unless", "offset", "atan2"}
_KEYWORDS |= {"inf", "nan"}


def selectors(expr: str) -> list[str]:
    """The vector selectors of a PromQL expression (``name{matchers}``), in order."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr) if m.lastgroup != "space"]
    found: list[str] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "ident" and text.lower() in _LABEL_LISTS:
            i += 1
            if following[1] == "(":  # skip the label list
                while i < len(tokens) and tokens[i][1] != ")":
                    i += 1
        elif kind == "ident" and text.lower() not in _KEYWORDS and following[1] != "(":
            if following[0] == "matchers":
                found.append(text + following[1])
                i += 1
            else:
                found.append(text)
        elif kind == "matchers":
            found.append(text)  # a selector without a metric name
        i += 1
    return found


def metric_name(selector: str) -> str:
    return selector.split("{", 1)[0]


# -- a real Prometheus -----------------------------------------------------------------------


def live_config(
    stores_file: Path, consumers: dict[str, str], *, interval: str = "1s"
) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with its targets replaced: the edges from
    ``stores_file`` (file_sd), the consumers from ``consumers`` (service -> host:port), the
    alert rules by absolute path, and everything scraped and evaluated every ``interval``."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(
        scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval
    )
    config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config["rule_files"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["tillstream-edge"]["file_sd_configs"] = [
        {"files": [str(stores_file)], "refresh_interval": "5s"}
    ]
    jobs["tillstream-consumers"]["static_configs"] = [
        {"targets": [target], "labels": {"service": service}}
        for service, target in consumers.items()
    ]
    return config


class PrometheusProcess(Service):
    """``prometheus`` on a free loopback port with its own config and data directory."""

    def __init__(self, config: dict[str, Any], workdir: Path, port: int | None = None) -> None:
        port = port or free_port()
        self.config, self.workdir = config, workdir
        super().__init__(
            "prometheus",
            [
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            port,
            workdir / "prometheus.log",
            ready_path="/-/ready",
            command=(tool("prometheus"),),
            cwd=workdir,
            own_session=False,
        )

    def start(self, timeout: float = 60) -> PrometheusProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config, sort_keys=False))
        check = subprocess.run(
            [tool("promtool"), "check", "config", str(config_file)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 0, f"generated config invalid:\n{check.stdout}{check.stderr}"
        super().start()
        self.wait_ready(timeout)
        return self

    def kill(self) -> None:
        """SIGTERM, SIGKILL after 15 s (its data directory is the test's to throw away)."""
        self.stop(15)

    def api(self, path: str, **params: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body: dict[str, Any] = answer.json()
        return body

    def query(self, promql: str) -> dict[str, Any]:
        """The /api/v1/query answer (status, data or error) for ``promql`` now."""
        return self.api("query", query=promql)

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets", state="active")["data"]["activeTargets"]
        return active
