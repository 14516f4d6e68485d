"""The faults of a chaos run, each bounded in time, injected while the tills keep selling.

Faults that touch the cluster, the database or the consumers run one after another (two
brokers down at once would be below ``min.insync.replicas``, which is an outage, not a fault
the system must ride through). Taking a store offline runs beside them: that store's edge
keeps taking sales into its outbox and drains it when the uplink is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chaos.fleet import KILL, OFFLINE, Outage
from chaos.rig import Rig

Say = Callable[[str], None]


@dataclass(frozen=True)
class Timing:
    """How long things stay broken."""

    down: float
    """A killed or stopped process stays down this long before it is restarted."""
    database: float
    offline: float
    """How long the offline store is cut off from Kafka."""
    edge_down: float
    """How long the killed edge stays down: long enough for head office's fleet service to
    call it silent (:attr:`chaos.fleet.Watch.long_enough`, with the edge's restart)."""
    restart: float
    """About how long a restart takes, to pace the tills (a fault that takes longer only
    starts the next one later: they still all run, some after the tills are done)."""

    @classmethod
    def for_run(cls, short: bool) -> Timing:
        if short:  # a small cluster restarts in 5-8 s
            return cls(down=4, database=8, offline=20, edge_down=40, restart=10)
        return cls(down=10, database=20, offline=180, edge_down=70, restart=15)


@dataclass
class Fault:
    name: str
    inject: Callable[[Rig, Timing, Say], Awaitable[str]]
    """Breaks something, waits, repairs it; returns what it did, for the report."""


@dataclass
class Injected:
    name: str
    detail: str
    started: float
    seconds: float


async def leader_kill(rig: Rig, timing: Timing, say: Say) -> str:
    store = rig.plan.stores[0]
    leader = await rig.cluster.leader_of(rig.settings, store)
    node = rig.cluster.node(leader)
    await asyncio.to_thread(node.kill)
    await asyncio.sleep(timing.down)
    await asyncio.to_thread(node.start)
    return f"SIGKILL node {leader}, leader of {store}'s sales partition; restarted"


async def broker_restart(rig: Rig, timing: Timing, say: Say) -> str:
    # Not the leader of the first store this time: another node takes its turn.
    leader = await rig.cluster.leader_of(rig.settings, rig.plan.stores[0])
    node_id = leader % rig.cluster.size + 1
    node = rig.cluster.node(node_id)
    await asyncio.to_thread(node.stop)
    await asyncio.sleep(timing.down)
    await asyncio.to_thread(node.start)
    return f"node {node_id} stopped (controlled shutdown) and restarted"


async def edge_kill(rig: Rig, timing: Timing, say: Say) -> str:
    store = rig.plan.stores[0]
    edge = rig.edges[store]
    killed = datetime.now(UTC)
    await asyncio.to_thread(edge.kill)
    await asyncio.sleep(timing.edge_down)
    rig.outages.append(Outage(store, KILL, killed, datetime.now(UTC)))
    await asyncio.to_thread(rig.restart, edge)
    return f"SIGKILL edge {store} mid-traffic for {timing.edge_down:.0f}s; restarted on its outbox"


async def consumer_kill(rig: Rig, timing: Timing, say: Say) -> str:
    erp = rig.consumers["erp-1"]
    await asyncio.to_thread(erp.kill)  # its partitions move to erp-2
    await asyncio.sleep(timing.down)
    await asyncio.to_thread(rig.restart, erp)  # and are shared again
    return "SIGKILL erp-1 (erp-2 takes its partitions); restarted, group rebalanced"


async def consumers_kill(rig: Rig, timing: Timing, say: Say) -> str:
    victims = [rig.consumers[name] for name in ("crm", "analytics", "audit")]
    for service in victims:
        await asyncio.to_thread(service.kill)
    await asyncio.sleep(timing.down)
    for service in victims:
        await asyncio.to_thread(rig.restart, service)
    return "SIGKILL crm, analytics and the audit together; restarted"


async def scale_out(rig: Rig, timing: Timing, say: Say) -> str:
    extra = rig.consumers.setdefault("erp-3", rig.consumer_service("erp-3", "erp"))
    await asyncio.to_thread(rig.restart, extra)
    await asyncio.sleep(timing.down * 2)
    await asyncio.to_thread(extra.stop)
    return "erp-3 joined the group (rebalance to 3) and left it (rebalance to 2)"


async def database_outage(rig: Rig, timing: Timing, say: Say) -> str:
    await asyncio.to_thread(rig.postgres.stop, "immediate")
    await asyncio.sleep(timing.database)
    await asyncio.to_thread(rig.postgres.start)
    return f"PostgreSQL crashed (immediate stop) for {timing.database:.0f}s; restarted"


async def store_offline(rig: Rig, timing: Timing, say: Say) -> str:
    cut = datetime.now(UTC)
    for proxy in rig.cluster.proxies:
        await asyncio.to_thread(proxy.cut)
    await asyncio.sleep(timing.offline)
    for proxy in rig.cluster.proxies:
        await asyncio.to_thread(proxy.restore)
    rig.outages.append(Outage(rig.offline_store, OFFLINE, cut, datetime.now(UTC)))
    return f"store {rig.offline_store} cut off from Kafka for {timing.offline:.0f}s, then drained"


SEQUENTIAL: tuple[Fault, ...] = (
    Fault("leader-kill", leader_kill),
    Fault("edge-kill", edge_kill),
    Fault("consumer-kill", consumer_kill),
    Fault("database-outage", database_outage),
    Fault("broker-restart", broker_restart),
    Fault("consumers-kill", consumers_kill),
    Fault("scale-out", scale_out),
)
BESIDE: Fault = Fault("store-offline", store_offline)


@dataclass
class Schedule:
    """Faults triggered as the run progresses: each at its share of the events accepted."""

    rig: Rig
    timing: Timing
    progress: Callable[[], float]
    """0..1: how far the tills are."""
    say: Say
    injected: list[Injected] = field(default_factory=list)
    current: str = ""

    def estimate_seconds(self) -> float:
        """About how long the faults take, restarts included (to pace the tills)."""
        faults = len(SEQUENTIAL) * (self.timing.down + self.timing.restart)
        return faults + self.timing.database + self.timing.edge_down - self.timing.down

    async def run(self) -> list[Injected]:
        n = len(SEQUENTIAL)
        await asyncio.gather(
            self._lane([(f, (i + 0.5) / (n + 0.5)) for i, f in enumerate(SEQUENTIAL)]),
            self._lane([(BESIDE, 0.25)]),
        )
        return self.injected

    async def _lane(self, faults: list[tuple[Fault, float]]) -> None:
        for fault, at in faults:
            while self.progress() < at:  # noqa: ASYNC110 (progress is a count, not an event)
                await asyncio.sleep(0.2)
            started = time.monotonic()
            self.current = fault.name
            self.say(f"chaos: fault {fault.name} ...")
            detail = await fault.inject(self.rig, self.timing, self.say)
            seconds = time.monotonic() - started
            self.injected.append(Injected(fault.name, detail, started, seconds))
            self.say(f"chaos: fault {fault.name}: {detail} ({seconds:.0f}s)")
            self.current = ""
