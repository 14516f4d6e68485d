"""A master-data file against what its topic holds: what is new, changed, deleted, the same.

Records compare by their content fields (never ``event_id`` nor ``published_at``): publishing
the same file twice changes nothing the second time. Deleting is for a file that is the
whole master (``full``): keys on the topic that the file does not have get a tombstone,
unless that is more than :data:`MASS_DELETE_SHARE` of what the topic holds and the caller
did not allow it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

MASS_DELETE_SHARE = 0.10
"""Deleting more than this share of a topic's keys needs ``--allow-mass-delete``."""


class MassDeleteRefused(ValueError):
    """A full file that would delete more than :data:`MASS_DELETE_SHARE` of the topic."""


class MasterConflict(ValueError):
    """The topic would hold records that contradict one another (a GTIN on two items)."""


@dataclass
class Changes:
    """What publishing a file would do to its topic."""

    new: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    changed: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    deleted: list[bytes] = field(default_factory=list)
    unchanged: int = 0

    @property
    def upserts(self) -> dict[bytes, dict[str, Any]]:
        """New and changed records, by key."""
        return {**self.new, **self.changed}

    def __len__(self) -> int:
        return len(self.new) + len(self.changed) + len(self.deleted)

    def summary(self, kind: str) -> str:
        return (
            f"{kind}: {len(self.new)} new, {len(self.changed)} changed, "
            f"{len(self.deleted)} deleted, {self.unchanged} unchanged"
        )


Check = Callable[[Iterable[dict[str, Any]]], list[str]]
"""What is wrong with a whole master (the records a topic would hold), for people."""


def compare(
    wanted: dict[bytes, dict[str, Any]],
    held: dict[bytes, dict[str, Any] | None],
    *,
    full: bool = False,
    allow_mass_delete: bool = False,
    check: Check | None = None,
) -> Changes:
    """The changes that make the topic hold ``wanted`` (and, if ``full``, nothing else);
    :class:`MasterConflict` if ``check`` finds the result contradicts itself."""
    if check is not None:
        kept = {} if full else {k: v for k, v in held.items() if v is not None}
        conflicts = check({**kept, **wanted}.values())
        if conflicts:
            raise MasterConflict("; ".join(conflicts))
    changes = Changes()
    for key, record in wanted.items():
        if key not in held:
            changes.new[key] = record
        elif held[key] != record:
            changes.changed[key] = record
        else:
            changes.unchanged += 1
    if full:
        changes.deleted = sorted(key for key in held if key not in wanted)
        limit = int(len(held) * MASS_DELETE_SHARE)
        if len(changes.deleted) > limit and not allow_mass_delete:
            raise MassDeleteRefused(
                f"the file would delete {len(changes.deleted)} of the {len(held)} records the "
                f"topic holds (more than {MASS_DELETE_SHARE:.0%}); is it the whole master? "
                "Check it, then publish with --allow-mass-delete"
            )
    return changes
