"""Finding a consumer by name: a built-in (``erp``), ``package.module:Class``, or an entry
point in the ``tillstream.consumers`` group of an installed package."""

from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points

from tillstream_consumers.runtime.api import Consumer

ENTRY_POINT_GROUP = "tillstream.consumers"
BUILTIN = {
    "erp": "tillstream_consumers.erp:ErpInventory",
    "crm": "tillstream_consumers.crm:CrmProfiles",
    "analytics": "tillstream_consumers.analytics:Analytics",
    "audit": "tillstream_consumers.audit:SalesAudit",
    "fleet": "tillstream_consumers.fleet:FleetService",
}


class ConsumerNotFound(LookupError):
    pass


def load_consumer(spec: str) -> type[Consumer]:
    """The consumer class that ``spec`` names (a built-in also by its group: erp-inventory)."""
    target = BUILTIN.get(spec) or BUILTIN.get(_builtin_of_group(spec) or "")
    if target is None and ":" not in spec:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
        if not found:
            known = sorted({*BUILTIN, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
            raise ConsumerNotFound(
                f"no consumer {spec!r}: use one of {', '.join(known)}, or package.module:Class"
            )
        return _checked(spec, found[0].load())
    module_name, _, attr = (target or spec).partition(":")
    if target is None:
        _search_working_directory()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConsumerNotFound(_import_failed(spec, module_name, exc)) from exc
    try:
        return _checked(spec, getattr(module, attr))
    except AttributeError:
        raise ConsumerNotFound(f"module {module_name!r} has no {attr!r}") from None


def _search_working_directory() -> None:
    """A user's ``module:Class`` is found in the directory the command runs in, as ``python -m``,
    uvicorn and gunicorn find theirs: the installed ``tillstream`` script alone would not look
    there, and docs/consumers.md runs ``tillstream consume visits:VisitCounter`` beside
    ``visits.py``."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def _import_failed(spec: str, module_name: str, exc: ImportError) -> str:
    """What to do when ``module_name`` does not import: where it was looked for, or which of
    its own imports failed."""
    missing = getattr(exc, "name", None)
    if (
        isinstance(exc, ModuleNotFoundError)
        and missing
        and f"{module_name}.".startswith(f"{missing}.")
    ):
        path = os.environ.get("PYTHONPATH")
        searched = f"PYTHONPATH={path}" if path else "PYTHONPATH (not set)"
        first = module_name.split(".")[0]
        return (
            f"cannot import {module_name!r} for consumer {spec!r}: no module {missing!r} in "
            f"the current directory {os.getcwd()}, {searched} or the installed packages. "
            f"Run the command in the directory that holds {first}.py (or the package "
            f"{first}/), or set PYTHONPATH to that directory"
        )
    return f"cannot import {module_name!r} for consumer {spec!r}: {type(exc).__name__}: {exc}"


def _checked(spec: str, obj: object) -> type[Consumer]:
    if not (isinstance(obj, type) and issubclass(obj, Consumer)):
        raise ConsumerNotFound(f"{spec!r} is not a tillstream Consumer subclass")
    for attribute in ("name", "topics"):
        if not getattr(obj, attribute, None):
            raise ConsumerNotFound(f"consumer {spec!r} does not set {attribute!r}")
    return obj


def group_of(spec: str) -> str:
    """The consumer group, which also names the dead-letter topic, that ``spec`` means: what
    operators type (``erp``), an entry point, ``package.module:Class``, or the group itself
    (``erp-inventory``, or one given to ``consume --group``)."""
    try:
        return load_consumer(spec).name
    except ConsumerNotFound:
        return spec


def builtin_groups() -> dict[str, str]:
    """Short name -> consumer group of each built-in consumer (``erp`` -> ``erp-inventory``)."""
    return {short: _load_builtin(short).name for short in BUILTIN}


def _builtin_of_group(group: str) -> str | None:
    if ":" in group or group in BUILTIN:
        return None
    return next((short for short, name in builtin_groups().items() if name == group), None)


def _load_builtin(short: str) -> type[Consumer]:
    module_name, _, attr = BUILTIN[short].partition(":")
    cls: type[Consumer] = getattr(importlib.import_module(module_name), attr)
    return cls
