"""The consumer runtime: offsets, retries, dead letters, metrics and shutdown, so that a
consumer's own code is only its tables and its ``apply`` (see ``tillstream_consumers/example.py``
and ``docs/consumers.md``)."""

from tillstream_consumers.runtime.api import (
    MONEY_SCALE,
    QTY_SCALE,
    Consumer,
    Context,
    PermanentError,
    Query,
    Record,
    Tombstone,
    WrongEvent,
    from_units,
    to_units,
)
from tillstream_consumers.runtime.db import Database, connect

__all__ = [
    "MONEY_SCALE",
    "QTY_SCALE",
    "Consumer",
    "Context",
    "Database",
    "PermanentError",
    "Query",
    "Record",
    "Tombstone",
    "WrongEvent",
    "connect",
    "from_units",
    "to_units",
]
