"""The committed Avro contracts under ``schemas/``: loading, stable ids and the compatibility check.

Layout: ``schemas/<event>/v<N>.avsc`` holds every version of an event's schema; the highest
version is current. ``schemas/ids.json`` pins each (event, version) to a schema id and a
fingerprint, so ids never move and a published version is never edited in place.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import fastavro
from avro import compatibility
from avro import schema as avro_schema

IDS_FILE = "ids.json"
_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")


class SchemaSetError(ValueError):
    """The schema directory is inconsistent (missing ids, edited versions, bad JSON...)."""


@dataclass(frozen=True)
class SchemaVersion:
    """One committed version of an event schema."""

    event: str
    version: int
    schema_id: int | None
    definition: dict[str, Any]
    path: Path

    @property
    def canonical(self) -> str:
        """Avro parsing canonical form: the identity of a schema regardless of docs and spacing."""
        return str(fastavro.schema.to_parsing_canonical_form(self.definition))

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.canonical.encode()).hexdigest()

    @property
    def full_name(self) -> str:
        ns = self.definition.get("namespace")
        name = str(self.definition["name"])
        return f"{ns}.{name}" if ns else name


def default_schemas_dir() -> Path:
    """The bundled schemas (installed wheel) or the repository's ``schemas/`` (checkout)."""
    bundled = resources.files("tillstream") / "_schemas"
    if bundled.is_dir():
        return Path(str(bundled))
    return Path(__file__).resolve().parents[2] / "schemas"


class SchemaSet:
    """Every version of every event schema in a directory."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_schemas_dir()
        if not self.root.is_dir():
            raise SchemaSetError(f"schema directory not found: {self.root}")
        self.ids: dict[str, dict[str, Any]] = self._read_ids()
        self.versions: dict[str, list[SchemaVersion]] = {}
        for event_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            found = [self._load(event_dir.name, f) for f in event_dir.glob("v*.avsc")]
            if found:
                self.versions[event_dir.name] = sorted(found, key=lambda v: v.version)

    def current(self, event: str) -> SchemaVersion:
        try:
            return self.versions[event][-1]
        except KeyError:
            raise SchemaSetError(
                f"no schema for event {event!r} in {self.root}; have {sorted(self.versions)}"
            ) from None

    def all_versions(self) -> list[SchemaVersion]:
        return [v for versions in self.versions.values() for v in versions]

    def _read_ids(self) -> dict[str, dict[str, Any]]:
        path = self.root / IDS_FILE
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SchemaSetError(f"{path}: not valid JSON: {exc}") from None
        return {str(k): dict(v) for k, v in data.items()}

    def _load(self, event: str, path: Path) -> SchemaVersion:
        match = _VERSION_FILE.match(path.name)
        if not match:
            raise SchemaSetError(f"{path}: schema files are named v<N>.avsc")
        version = int(match.group(1))
        try:
            definition = json.loads(path.read_text())
            fastavro.parse_schema(definition)
        except (json.JSONDecodeError, fastavro.schema.SchemaParseException, ValueError) as exc:
            raise SchemaSetError(f"{path}: not a valid Avro schema: {exc}") from None
        entry = self.ids.get(id_key(event, version))
        schema_id = int(entry["id"]) if entry else None
        return SchemaVersion(event, version, schema_id, definition, path)


def id_key(event: str, version: int) -> str:
    return f"{event}/v{version}"


def check(schemas: SchemaSet) -> list[str]:
    """Every problem with the schema set; empty when it may be published.

    Checks that versions are numbered 1..N, every field has a ``doc``, each version has a
    unique pinned id and was not edited after it was pinned, and each version is backward
    compatible with every earlier one (transitively: new readers read all old data).
    """
    problems: list[str] = []
    seen_ids: dict[int, str] = {}
    for event, versions in schemas.versions.items():
        numbers = [v.version for v in versions]
        if numbers != list(range(1, len(numbers) + 1)):
            problems.append(f"{event}: versions must be v1..vN without gaps, found {numbers}")
        for v in versions:
            where = f"{event}/v{v.version}"
            problems += [f"{where}: {p}" for p in _undocumented(v.definition)]
            entry = schemas.ids.get(id_key(event, v.version))
            if entry is None:
                problems.append(
                    f"{where}: no id pinned in {IDS_FILE} (run `tillstream schemas check --pin`)"
                )
            else:
                if entry.get("fingerprint") != v.fingerprint:
                    problems.append(
                        f"{where}: changed after it was published; add v{versions[-1].version + 1}"
                        " instead of editing a published version"
                    )
                if v.schema_id in seen_ids:
                    problems.append(
                        f"{where}: id {v.schema_id} also used by {seen_ids[v.schema_id]}"
                    )
                if v.schema_id is not None:
                    seen_ids[v.schema_id] = where
        for i, reader in enumerate(versions):
            for writer in versions[:i]:
                where = f"{event}/v{reader.version}"
                problems += [
                    f"{where} cannot read data written with v{writer.version}: {m}"
                    for m in incompatibilities(reader.definition, writer.definition)
                ]
    return problems


def pin_new_versions(schemas: SchemaSet) -> list[str]:
    """Give every unpinned version the next free id and record its fingerprint."""
    ids = dict(schemas.ids)
    next_id = max((int(e["id"]) for e in ids.values()), default=0) + 1
    pinned = []
    for v in schemas.all_versions():
        key = id_key(v.event, v.version)
        if key not in ids:
            ids[key] = {"id": next_id, "fingerprint": v.fingerprint}
            pinned.append(f"{key} -> id {next_id}")
            next_id += 1
    if pinned:
        text = json.dumps(dict(sorted(ids.items())), indent=2) + "\n"
        (schemas.root / IDS_FILE).write_text(text)
    return pinned


def incompatibilities(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader`` (Apache Avro's rules)."""
    checker = compatibility.ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(
        avro_schema.parse(json.dumps(reader)), avro_schema.parse(json.dumps(writer))
    )
    if result.compatibility is compatibility.SchemaCompatibilityType.compatible:
        return []
    return [
        f"{message} at {location}"
        for message, location in zip(result.messages, result.locations, strict=False)
    ] or ["incompatible"]


def _undocumented(definition: Any, path: str = "") -> list[str]:
    """Fields without a ``doc`` string, searched through nested records."""
    missing: list[str] = []
    if isinstance(definition, list):
        for branch in definition:
            missing += _undocumented(branch, path)
    elif isinstance(definition, dict):
        if definition.get("type") == "record":
            for field in definition.get("fields", []):
                where = f"{path}{field['name']}"
                if not str(field.get("doc", "")).strip():
                    missing.append(f"field {where} has no doc")
                missing += _undocumented(field["type"], where + ".")
        elif definition.get("type") == "array":
            missing += _undocumented(definition["items"], path)
        elif definition.get("type") == "map":
            missing += _undocumented(definition["values"], path)
    return missing
