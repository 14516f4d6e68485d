"""Finding a consumer by name: a built-in (``erp``), ``package.module:Class``, or an entry
point in the ``tillstream.consumers`` group of an installed package."""

from __future__ import annotations

import importlib
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
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConsumerNotFound(
            f"cannot import {module_name!r} for consumer {spec!r}: {exc}"
        ) from exc
    try:
        return _checked(spec, getattr(module, attr))
    except AttributeError:
        raise ConsumerNotFound(f"module {module_name!r} has no {attr!r}") from None


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
