"""Generating ``tillstream/core/events.py``: a ``TypedDict`` per event type, from the current
version of each Avro schema under ``schemas/``, typed as the codec decodes it.

Run ``tillstream schemas types`` after adding or changing a schema; a test fails while the
file is out of date. Types follow what a consumer receives: ``Decimal`` for decimals,
timezone-aware ``datetime`` for timestamps, ``date`` for dates, the symbol's name (a
``Literal``) for enums, ``UUID`` for uuids except ``event_id`` (a ``str``: the runtime turns
it into text once), ``X | None`` for ``["null", X]``.
"""

from __future__ import annotations

import keyword
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tillstream.core.schemas import SchemaSet

TARGET = Path(__file__).with_name("events.py")
"""Where the generated module lives."""

_PRIMITIVES = {
    "string": "str",
    "int": "int",
    "long": "int",
    "float": "float",
    "double": "float",
    "boolean": "bool",
    "bytes": "bytes",
    "null": "None",
}
_LOGICAL = {
    "decimal": "Decimal",
    "uuid": "UUID",
    "date": "date",
    "timestamp-micros": "datetime",
    "timestamp-millis": "datetime",
    "time-micros": "time",
    "time-millis": "time",
}

_HEADER = '''"""One ``TypedDict`` per event type: the decoded Avro record a consumer receives
(``Record.sale()``, ``Record.payment()``...).

Generated from the schemas under ``schemas/`` by ``tillstream schemas types``
(``tillstream/core/event_types.py``): do not edit by hand.
"""

from __future__ import annotations

'''


@dataclass
class _Module:
    blocks: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    imported: set[str] = field(default_factory=set)
    """Names of the standard library the annotations use (``Decimal``, ``datetime``...)."""
    events: list[tuple[str, str]] = field(default_factory=list)
    """(event type, TypedDict name)."""


def render(schemas: SchemaSet | None = None) -> str:
    """The source of ``events.py`` for ``schemas`` (default: the bundled ones)."""
    found = schemas or SchemaSet()
    module = _Module()
    for event in sorted(found.versions):
        name = _record(module, found.current(event).definition)
        module.events.append((event, name))
    by_event = "\n".join(f'    "{event}": {name},' for event, name in module.events)
    names = "\n".join(f'    "{event}",' for event, _ in module.events)
    body = "\n\n".join(module.blocks)
    return (
        f"{_HEADER}{_imports(module.imported)}\n{body}\n\n"
        f"EventType = Literal[\n{names}\n]\n"
        '"""The name of an event type (its schema directory): misspelt, a type error."""\n\n'
        f"EVENT_TYPES: dict[str, type] = {{\n{by_event}\n}}\n"
        '"""The TypedDict of each event type (the schema\'s directory name)."""\n'
    )


def write(target: Path = TARGET, schemas: SchemaSet | None = None) -> bool:
    """Write ``events.py``; whether it changed."""
    source = render(schemas)
    if target.exists() and target.read_text() == source:
        return False
    target.write_text(source)
    return True


def _imports(used: set[str]) -> str:
    """The import lines for the ``used`` names."""
    clock = [n for n in ("date", "datetime", "time") if n in used]
    lines = [f"from datetime import {', '.join(clock)}" if clock else ""]
    lines.append("from decimal import Decimal" if "Decimal" in used else "")
    lines.append("from typing import Literal, TypedDict")
    lines.append("from uuid import UUID" if "UUID" in used else "")
    return "\n".join(line for line in lines if line) + "\n"


def _record(module: _Module, definition: dict[str, Any]) -> str:
    name = str(definition["name"])
    if name in module.names:
        return name
    module.names.add(name)
    lines = []
    for f in definition["fields"]:
        field_name = str(f["name"])
        if keyword.iskeyword(field_name) or not field_name.isidentifier():
            raise ValueError(f"{name}.{field_name}: not a Python identifier")
        annotation = _type(module, f["type"], field_name)
        lines.append(f"    {field_name}: {annotation}")
        if f.get("doc"):
            lines.append(_docstring(f["doc"], "    "))
    doc = _docstring(definition["doc"], "    ") + "\n\n" if definition.get("doc") else ""
    module.blocks.append(f"class {name}(TypedDict):\n{doc}" + "\n".join(lines) + "\n")
    return name


def _type(module: _Module, avro: Any, field_name: str) -> str:
    if isinstance(avro, list):
        members = [_type(module, a, field_name) for a in avro]
        return " | ".join(dict.fromkeys(m for m in members if m != "None")) + (
            " | None" if "None" in members else ""
        )
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return _PRIMITIVES[avro]
        return avro.rsplit(".", 1)[-1]  # a named type defined earlier
    kind = avro["type"]
    logical = avro.get("logicalType")
    if logical == "uuid" and field_name == "event_id":
        return "str"
    if logical in _LOGICAL:
        module.imported.add(_LOGICAL[logical])
        return _LOGICAL[logical]
    if kind == "record":
        return _record(module, avro)
    if kind == "enum":
        return _enum(module, avro)
    if kind == "array":
        return f"list[{_type(module, avro['items'], field_name)}]"
    if kind == "map":
        return f"dict[str, {_type(module, avro['values'], field_name)}]"
    if kind == "fixed":
        return "bytes"
    return _type(module, kind, field_name)


def _enum(module: _Module, definition: dict[str, Any]) -> str:
    name = str(definition["name"])
    if name not in module.names:
        module.names.add(name)
        symbols = ", ".join(f'"{s}"' for s in definition["symbols"])
        if len(f"{name} = Literal[{symbols}]") > 100:  # one a line, as ruff format has it
            symbols = "".join(f'\n    "{s}",' for s in definition["symbols"]) + "\n"
        doc = "\n" + _docstring(definition["doc"], "") if definition.get("doc") else ""
        module.blocks.append(f"{name} = Literal[{symbols}]{doc}\n")
    return name


def _docstring(text: str, indent: str) -> str:
    """``text`` as a docstring at ``indent``, wrapped to the line length."""
    clean = " ".join(str(text).split()).replace("\\", "\\\\").replace('"""', "'''")
    one_line = f'{indent}"""{clean}"""'
    if len(one_line) <= 100:
        return one_line
    wrapped = textwrap.fill(clean, 96, initial_indent=indent, subsequent_indent=indent)
    return f'{indent}"""{wrapped.removeprefix(indent)}\n{indent}"""'
