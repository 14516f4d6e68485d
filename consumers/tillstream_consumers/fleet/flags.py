"""What the fleet service flags, and when: a pure function of one store's state and the
time (:func:`evaluate`), so the flags are the same whether a report just arrived or time
alone passed (an edge gone silent, a store opening with a scanner unplugged), and after a
restart.

Each evaluation also says when time alone could next change the store's flags (``due``): the
service looks at that store again then, not at every store every few seconds. While an
edge is silent, what its last report said (outbox, clock, devices, tills) is stale: those
flags are left as they were until it reports again; the silence is the flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tillstream.core.settings import Settings
from tillstream_consumers.fleet.opening import OpeningHours, midnight_after, today
from tillstream_consumers.fleet.times import local, parse, span, zone
from tillstream_consumers.fleet.views import StoreView

EDGE_SILENT = "edge_silent"
OUTBOX_GROWING = "outbox_growing"
CLOCK_SKEW = "clock_skew"
DEVICE_DOWN = "device_down"
TILL_NOT_SEEN = "till_not_seen"
DRIFT = "drift"
SUSPENDED_POSTING = "suspended_posting"

KINDS: tuple[str, ...] = (
    EDGE_SILENT,
    OUTBOX_GROWING,
    CLOCK_SKEW,
    DEVICE_DOWN,
    TILL_NOT_SEEN,
    DRIFT,
    SUSPENDED_POSTING,
)
"""Every kind of flag, most urgent first."""
FROM_THE_LAST_REPORT = frozenset({OUTBOX_GROWING, CLOCK_SKEW, DEVICE_DOWN, TILL_NOT_SEEN})
"""Kinds read from what the edge last said: left as they are while it is silent."""

NEXT_STEPS: dict[str, str] = {
    EDGE_SILENT: "Call the store: is the edge's server on, and does it reach head office "
    "(VPN, uplink)? The tills keep selling into its outbox meanwhile; the flag goes with its "
    "next report.",
    OUTBOX_GROWING: "Events wait at the store: Kafka is unreachable from it or too slow for its "
    "volume. Check the store's link and the edge's log; the backlog drains by itself, oldest "
    "first, once the link is back.",
    CLOCK_SKEW: "Have the store's IT fix the edge server's time (NTP): events carry its clock, "
    "and a clock far off makes them implausible.",
    DEVICE_DOWN: "Ask the store to check the device's cable or USB adapter; the edge reconnects "
    "by itself. A device given up for good: take it out of the devices file (or clear head "
    "office's settings for it).",
    TILL_NOT_SEEN: "Ask the store whether the till is off, broken or posting to a wrong address; "
    "a till taken out of service for good: decommission it (`tillstream fleet set`).",
    DRIFT: "The edge has not applied head office's desired state: refused (the error says why: "
    "fix and publish again) or not yet received (is the edge silent?).",
    SUSPENDED_POSTING: "A suspended or decommissioned till keeps trying to post: if it was lost "
    "or stolen, tell security where it is used (the store); otherwise reactivate it.",
}
"""What head office IT does next about each kind: shown beside each flag on the page and in
the API, listed in docs/fleet.md (a test keeps them equal)."""

RECENT_REFUSALS = timedelta(hours=1)
"""A suspended till's refusals count as still trying for this long after the last rise."""
_LATER = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Rules:
    """The chain's thresholds (``TILLSTREAM_FLEET_*``)."""

    silent_heartbeats: float
    outbox_max_age: timedelta
    rising_reports: int
    max_skew: timedelta
    hours: OpeningHours
    device_down_after: timedelta
    till_days: int
    till_grace: timedelta
    drift_after: timedelta

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(
            settings.fleet_silent_heartbeats,
            settings.fleet_outbox_max_age,
            settings.fleet_outbox_rising_reports,
            settings.fleet_max_clock_skew,
            OpeningHours.parse(settings.fleet_opening_hours),
            settings.fleet_device_down_after,
            settings.fleet_till_days,
            settings.fleet_till_grace,
            settings.fleet_drift_after,
        )


@dataclass(frozen=True)
class Finding:
    """A flag as an evaluation finds it: open while evaluations keep finding it."""

    kind: str
    subject: str
    """What it is about: ``edge``, a till or device id, a target (``till/T02``)."""
    message: str


@dataclass(frozen=True)
class Evaluation:
    findings: list[Finding]
    kinds: frozenset[str]
    """The kinds this evaluation decided on; flags of other kinds are left as they are."""
    due: datetime | None
    """When time alone could next change the flags (None: only a record can)."""
    silent: bool


def silent_after(heartbeat_seconds: int, rules: Rules) -> timedelta:
    """How long an edge may go without a report before it is silent: its own heartbeat
    period (as it reports it) times ``TILLSTREAM_FLEET_SILENT_HEARTBEATS``."""
    return timedelta(seconds=max(1, int(heartbeat_seconds)) * rules.silent_heartbeats)


def is_silent(appended_at: datetime, heartbeat_seconds: int, now: datetime, rules: Rules) -> bool:
    return now - appended_at > silent_after(heartbeat_seconds, rules)


def evaluate(view: StoreView, now: datetime, rules: Rules) -> Evaluation:
    """The store's flags at ``now``."""
    findings: list[Finding] = []
    due: list[datetime] = []
    kinds = {DRIFT, SUSPENDED_POSTING}
    silent = False
    edge = view.edge
    timezone = str(edge["timezone"]) if edge else "UTC"
    if edge is not None:
        kinds.add(EDGE_SILENT)
        last = _at(edge["appended_at"])
        limit = silent_after(int(edge["heartbeat_seconds"]), rules)
        if is_silent(last, int(edge["heartbeat_seconds"]), now, rules):
            silent = True
            findings.append(
                Finding(
                    EDGE_SILENT,
                    "edge",
                    f"no report since {local(last, timezone)} (it reports every "
                    f"{edge['heartbeat_seconds']} s; silent after {rules.silent_heartbeats:g} "
                    "heartbeats without one)",
                )
            )
        else:
            due.append(last + limit + _LATER)
    if edge is not None and not silent:
        kinds |= FROM_THE_LAST_REPORT
        findings += _outbox(edge, rules, timezone)
        findings += _skew(edge, rules)
        findings += _devices(view, now, rules, timezone, due)
        findings += _tills(view, now, rules, timezone, due)
    findings += _drift(view, now, rules, timezone, due)
    findings += _suspended(view, now, timezone, due)
    return Evaluation(findings, frozenset(kinds), min(due) if due else None, silent)


def _outbox(edge: dict[str, object], rules: Rules, timezone: str) -> list[Finding]:
    depth = int(str(edge["outbox_depth"]))
    oldest = parse(edge["oldest_unsent_at"])
    if oldest is not None and _at(edge["sent_at"]) - oldest > rules.outbox_max_age:
        message = f"the oldest of {depth} unsent events waits since {local(oldest, timezone)}"
        return [Finding(OUTBOX_GROWING, "edge", message)]
    if int(str(edge["depth_rises"])) >= rules.rising_reports:
        message = (
            f"the outbox grew in each of the last {rules.rising_reports} reports "
            f"({depth} events waiting)"
        )
        return [Finding(OUTBOX_GROWING, "edge", message)]
    return []


def _skew(edge: dict[str, object], rules: Rules) -> list[Finding]:
    skew = int(str(edge["skew_ms"])) / 1000
    if abs(skew) <= rules.max_skew.total_seconds():
        return []
    way = "ahead of" if skew > 0 else "behind"
    message = f"the edge's clock is {span(abs(skew))} {way} the broker's"
    return [Finding(CLOCK_SKEW, "edge", message)]


def _devices(
    view: StoreView, now: datetime, rules: Rules, timezone: str, due: list[datetime]
) -> list[Finding]:
    found = []
    is_open = rules.hours.is_open(now, timezone)
    for device in view.devices:
        if device["connected"]:
            continue
        since = parse(device["disconnected_since"]) or _at(view.edge["appended_at"])  # type: ignore[index]
        due.append(rules.hours.next_change(now, timezone))
        if not is_open:
            continue
        if now - since < rules.device_down_after:
            due.append(since + rules.device_down_after)
            continue
        name = device["device_id"]
        found.append(
            Finding(
                DEVICE_DOWN,
                str(name),
                f"{name} ({device['protocol']} on {device['port']}) disconnected since "
                f"{local(since, timezone)}",
            )
        )
    return found


def _tills(
    view: StoreView, now: datetime, rules: Rules, timezone: str, due: list[datetime]
) -> list[Finding]:
    day = today(now, timezone)
    opens, _ = rules.hours.day(day, timezone)
    starts = opens + rules.till_grace
    found = []
    waiting = False
    for till in view.tills:
        seen = parse(till["last_seen_at"])
        if till["lifecycle"] != "ACTIVE" or seen is None:
            continue
        seen_day = seen.astimezone(zone(timezone)).date()
        if seen_day >= day or (day - seen_day).days > rules.till_days:
            continue
        waiting = True
        if now >= starts:
            found.append(
                Finding(
                    TILL_NOT_SEEN,
                    str(till["till_id"]),
                    f"till {till['till_id']} not seen today (last seen {local(seen, timezone)})",
                )
            )
    if waiting:
        due.extend(at for at in (starts, midnight_after(now, timezone)) if at > now)
    return found


def _drift(
    view: StoreView, now: datetime, rules: Rules, timezone: str, due: list[datetime]
) -> list[Finding]:
    found = []
    for target, desired in sorted(view.desired.items()):
        if desired["payload"] is None:
            continue  # cleared: the store's own configuration
        version = int(desired["version"])
        applied = view.applied.get(target)
        if applied is not None and int(applied["version"]) >= version and applied["applied"]:
            continue
        if applied is not None and int(applied["version"]) == version:  # refused
            error = applied["error"] or "no reason given"
            message = f"{target}: version {version} refused by the edge: {error}"
            found.append(Finding(DRIFT, target, message))
            continue
        published = _at(desired["published_at"])
        if now - published < rules.drift_after:
            due.append(published + rules.drift_after)
            continue
        has = f"version {applied['version']}" if applied is not None else "none"
        found.append(
            Finding(
                DRIFT,
                target,
                f"{target}: version {version}, published {local(published, timezone)} by "
                f"{desired['published_by']}, not applied (the edge has {has})",
            )
        )
    return found


def _suspended(view: StoreView, now: datetime, timezone: str, due: list[datetime]) -> list[Finding]:
    found = []
    for till in view.tills:
        rose = parse(till["refused_rose_at"])
        if till["lifecycle"] not in ("SUSPENDED", "DECOMMISSIONED") or rose is None:
            continue
        if now - rose >= RECENT_REFUSALS:
            continue
        due.append(rose + RECENT_REFUSALS)
        found.append(
            Finding(
                SUSPENDED_POSTING,
                str(till["till_id"]),
                f"till {till['till_id']} ({str(till['lifecycle']).lower()}) still tries to "
                f"post: {till['refused_while_suspended']} requests refused, more at "
                f"{local(rose, timezone)}",
            )
        )
    return found


def _at(value: object) -> datetime:
    at = parse(value)
    assert at is not None, "a stored time that is never null"
    return at
