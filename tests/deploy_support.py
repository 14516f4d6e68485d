"""Reading the deployment files (deploy/) for the deploy tests: YAML, Compose interpolation,
the Dockerfile and .dockerignore, the CLI and settings they use."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from tillstream.cli import main
from tillstream.core.settings import Settings, env_name, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
K8S_DIR = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

COMPOSE_FILES = sorted(p for p in COMPOSE_DIR.glob("*.yaml") if "." not in p.stem)
"""The compose files that stand alone (``store.yaml``, ``hq.yaml``)."""
COMPOSE_OVERRIDES = {
    p: COMPOSE_DIR / f"{p.stem.partition('.')[0]}.yaml"
    for p in sorted(COMPOSE_DIR.glob("*.*.yaml"))
}
"""Override files (``store.tls-tokens.yaml``) -> the file they are used with (``-f store.yaml
-f store.tls-tokens.yaml``)."""
K8S_FILES = sorted(K8S_DIR.glob("*.yaml"))
SETTINGS_VARIABLES = {env_name(field) for field in Settings.model_fields}
# Oldest Kubernetes release whose schemas the manifests must satisfy (and the newest shipped).
K8S_VERSION = "1.30.0"
# Values for the variables the compose files require (${X:?...}); all others keep defaults.
COMPOSE_TEST_ENV = {
    "TILLSTREAM_STORE_ID": "S001",
    "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": "hq.example.internal:19092",
    "POSTGRES_PASSWORD": "secret",
    "GRAFANA_ADMIN_PASSWORD": "secret",
    "DEVICES_FILE": "./devices.example.toml",
}


# -- helpers: YAML, Compose interpolation, the Dockerfile -----------------------------------


def load_yaml_documents(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def variables_in(value: Any) -> Iterator[str]:
    """Names of the ``$VAR`` / ``${VAR...}`` references in every string of ``value``."""
    if isinstance(value, str):
        for m in _VARIABLE.finditer(value):
            name = m.group("braced") or m.group("plain")
            if name:
                yield name
    elif isinstance(value, dict):
        for v in value.values():
            yield from variables_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from variables_in(v)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of every string value (not keys), as ``docker compose config``.

    ``${X:-d}`` d if X is unset or empty, ``${X-d}`` d if unset, ``${X:?msg}`` / ``${X?msg}``
    an error, ``$$`` a literal ``$``.
    """
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("plain")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and missing:
            return arg
        if op in (":?", "?") and missing:
            raise KeyError(f"required variable {name} is not set: {arg}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def compose_config(path: Path, **env: str) -> dict[str, Any]:
    """The compose file as the engine sees it: YAML (anchors merged), then interpolated."""
    (raw,) = load_yaml_documents(path)
    config: dict[str, Any] = interpolate(raw, {**COMPOSE_TEST_ENV, **env})
    return config


def merged_config(base: Path, override: Path, **env: str) -> dict[str, Any]:
    """``docker compose -f BASE -f OVERRIDE`` as the engine merges them (the rules of the
    Compose specification's merge section these files use): mappings merged key by key,
    volumes and devices by their target, ports and other sequences appended, a
    healthcheck's ``test`` and a ``command`` replaced."""
    (over,) = load_yaml_documents(override)
    extra: dict[str, Any] = interpolate(over, {**COMPOSE_TEST_ENV, **env})
    merged: dict[str, Any] = _merge(compose_config(base, **env), extra, ())
    return merged


_REPLACED = {"command", "entrypoint", "test"}
_BY_TARGET = {"volumes", "devices"}


def _merge(base: Any, extra: Any, path: tuple[str, ...]) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for key, value in extra.items():
            out[key] = _merge(base[key], value, (*path, key)) if key in base else value
        return out
    if isinstance(base, list) and isinstance(extra, list) and path[-1] not in _REPLACED:
        if path[-1] in _BY_TARGET and len(path) > 2:  # a service's, not the top-level map
            kept = {_target(v): v for v in base}
            kept.update({_target(v): v for v in extra})
            return list(kept.values())
        return [*base, *extra]
    return extra


def _target(mount: Any) -> str:
    if isinstance(mount, dict):
        return str(mount["target"])
    return str(mount).split(":")[1]


def is_tillstream_image(service: dict[str, Any]) -> bool:
    build = service.get("build")
    return isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile"


def tillstream_services() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in COMPOSE_FILES:
        for name, service in compose_config(path)["services"].items():
            if is_tillstream_image(service):
                yield path.name, name, service


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(number) * units[unit]
    return total


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str, list[str]]]:
    """(INSTRUCTION, arguments, comments just before it), continuation lines joined."""
    out: list[tuple[str, str, list[str]]] = []
    comments: list[str] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            comments.append(stripped)
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        instruction, _, arguments = full.partition(" ")
        out.append((instruction.upper(), arguments.strip(), comments))
        comments = []
    return out


def dockerfile_stages() -> dict[str, list[tuple[str, str, list[str]]]]:
    """Instructions per build stage, by stage name (the ``AS`` name, or its index)."""
    stages: dict[str, list[tuple[str, str, list[str]]]] = {}
    current: list[tuple[str, str, list[str]]] | None = None
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            words = instruction[1].split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            current = stages.setdefault(name, [])
        if current is not None:
            current.append(instruction)
    return stages


def dockerfile_args() -> dict[str, str]:
    """Global ARG defaults (before the first FROM)."""
    args: dict[str, str] = {}
    for instruction, arguments, _ in dockerfile_instructions():
        if instruction == "FROM":
            break
        if instruction == "ARG":
            name, _, default = arguments.partition("=")
            args[name] = default
    return args


def dockerfile_env(stage: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments, _ in dockerfile_stages()[stage]:
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def builder_steps() -> list[str]:
    """The builder stage's RUN lines between the ``build steps: begin/end`` markers."""
    steps: list[str] = []
    inside = False
    for instruction, arguments, comments in dockerfile_stages()["builder"]:
        if any("build steps: end" in c for c in comments):
            inside = False
        if any("build steps: begin" in c for c in comments):
            inside = True
        if inside and instruction == "RUN":
            steps.append(arguments)
    return steps


def dockerignore_includes(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore lets ``relative`` (a file path) into the build context.

    The subset of the syntax the file uses: the last matching pattern wins, ``!`` re-includes,
    a pattern matching a parent directory matches everything below it, ``**/`` any depth.
    """
    parts = relative.split("/")
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if pattern.startswith("**/"):
            tail = pattern[3:]
            matched = any(fnmatch.fnmatchcase(part, tail) for part in parts)
        else:
            matched = any(
                fnmatch.fnmatchcase(c, pattern) and c.count("/") == pattern.count("/")
                for c in candidates
            )
        if matched:
            included = negate
    return included


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def build_context_files() -> list[str]:
    """The repository's files that reach the build context."""
    patterns = dockerignore_patterns()
    reincluded = [p[1:].strip("/") for p in patterns if p.startswith("!")]
    files = []
    for folder, dirs, names in os.walk(ROOT):
        base = Path(folder).relative_to(ROOT).as_posix().removeprefix(".")
        prefix = f"{base}/" if base else ""
        # Skip excluded folders nothing is re-included from (.git, .venv, tests, ...).
        dirs[:] = [
            d
            for d in dirs
            if dockerignore_includes(prefix + d, patterns)
            or any(r.startswith(prefix + d + "/") for r in reincluded)
        ]
        files += [prefix + n for n in names if dockerignore_includes(prefix + n, patterns)]
    return sorted(files)


def resolve_cli(args: list[str]) -> click.Command:
    """Parse ``tillstream ARGS`` with the real CLI without running it: every subcommand must
    exist, and the last one must accept the options and arguments (types, ranges, files)."""
    rest = list(args)
    if rest and rest[0].startswith("-"):  # options of the group itself (--help, --version)
        with pytest.raises(click.exceptions.Exit) as exited:
            main.make_context("tillstream", rest)
        assert exited.value.exit_code == 0
        return main
    ctx = main.make_context("tillstream", [], resilient_parsing=True)
    command: click.Command = main
    while isinstance(command, click.Group):
        if command.invoke_without_command and (not rest or rest[0].startswith("-")):
            break  # the group's own options (``tillstream audit --day D``)
        assert rest, f"tillstream {' '.join(args)}: no subcommand of {command.name}"
        name = rest.pop(0)
        sub = command.get_command(ctx, name)
        assert sub is not None, f"tillstream {' '.join(args)}: no command {name!r}"
        if isinstance(sub, click.Group):
            ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
        command = sub
    if "--help" in rest or "-h" in rest:
        with pytest.raises(click.exceptions.Exit) as exited:
            command.make_context(command.name or "", rest, parent=ctx)
        assert exited.value.exit_code == 0
    else:
        command.make_context(command.name or "", rest, parent=ctx)
    return command


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(os.environ):
        if key.startswith("TILLSTREAM_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("TILLSTREAM_"):
            monkeypatch.setenv(key, value)
    return load_settings()
