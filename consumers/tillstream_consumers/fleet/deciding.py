"""What a person (or a script with a token) decides on the fleet page or API: a till's
lifecycle, published as head office's desired state in their name, through the same
checks and publishing as ``tillstream fleet set`` (``tillstream.fleet``)."""

from __future__ import annotations

from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.fleet.desired import Problems, till_change
from tillstream.fleet.publishing import Planned, decide
from tillstream_consumers.runtime.access import Principal

ACTIONS = {"suspend": "SUSPENDED", "reactivate": "ACTIVE"}
"""The page's actions on a till, and the lifecycle each publishes."""


async def set_lifecycle(
    settings: Settings,
    codec: AvroCodec,
    store: str,
    till: str,
    lifecycle: str,
    principal: Principal,
) -> Planned | None:
    """Publish ``lifecycle`` for the till as ``principal``; None if it is already so.
    :class:`~tillstream.fleet.desired.DesiredError` if the store, till or lifecycle is not
    one. Reads only the partition of the till's key."""
    problems = Problems()
    change = till_change(store, till, {"lifecycle": lifecycle}, problems, replace=False)
    problems.raise_any()
    assert change is not None
    planned = await decide(settings, codec, [change], principal.trail, whole_topic=False)
    return planned[0] if planned else None
