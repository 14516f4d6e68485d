"""Three KRaft nodes on loopback, each broker and controller, topics at RF 3 / min ISR 2.

Every node has a second client listener, ``STORE``, advertised at a :class:`Proxy` port:
the store that is taken offline reaches the cluster only through those proxies, so cutting
them cuts that store alone while the others keep publishing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner

from chaos.proxy import Proxy
from tillstream.core.kafka import make_admin
from tillstream.core.settings import Settings
from tillstream.core.topics import SALES, store_key
from tillstream.dev.broker import LocalKafka, new_cluster_id
from tillstream.dev.ports import free_port


@dataclass
class Cluster:
    root: Path
    libs: Path
    size: int = 3
    nodes: list[LocalKafka] = field(default_factory=list)
    proxies: list[Proxy] = field(default_factory=list)

    def __post_init__(self) -> None:
        cluster_id = new_cluster_id()
        controller_ports = [free_port() for _ in range(self.size)]
        voters = ",".join(f"{n + 1}@127.0.0.1:{p}" for n, p in enumerate(controller_ports))
        for n, controller_port in enumerate(controller_ports):
            port, store_port, proxy_port = free_port(), free_port(), free_port()
            self.proxies.append(Proxy(proxy_port, store_port))
            self.nodes.append(
                LocalKafka(
                    data_dir=self.root / f"node{n + 1}",
                    libs=self.libs,
                    port=port,
                    controller_port=controller_port,
                    node_id=n + 1,
                    voters=voters,
                    cluster_id=cluster_id,
                    heap="768m",
                    extra_config={
                        "listeners": f"PLAINTEXT://127.0.0.1:{port},"
                        f"CONTROLLER://127.0.0.1:{controller_port},"
                        f"STORE://127.0.0.1:{store_port}",
                        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},"
                        f"STORE://127.0.0.1:{proxy_port}",
                        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,"
                        "CONTROLLER:PLAINTEXT,STORE:PLAINTEXT",
                        "min.insync.replicas": "2",
                        "default.replication.factor": "3",
                        "transaction.state.log.min.isr": "2",
                    },
                )
            )

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def store_bootstrap(self) -> str:
        """What the store behind the proxies connects to."""
        return ",".join(f"127.0.0.1:{proxy.listen_port}" for proxy in self.proxies)

    def start(self) -> None:
        for proxy in self.proxies:
            proxy.start()
        # Together: a node is ready only once a quorum of controllers runs.
        with ThreadPoolExecutor(self.size) as pool:
            list(pool.map(LocalKafka.start, self.nodes))

    def stop(self) -> None:
        with ThreadPoolExecutor(self.size) as pool:
            list(pool.map(LocalKafka.stop, self.nodes))
        for proxy in self.proxies:
            proxy.close()

    def node(self, node_id: int) -> LocalKafka:
        return self.nodes[node_id - 1]

    async def leader_of(self, settings: Settings, store: str) -> int:
        """Node id leading the sales partition that ``store``'s events go to."""
        admin = make_admin(settings)
        await admin.start()
        try:
            described = await admin.describe_topics([SALES.name])
        finally:
            await admin.close()
        partitions = sorted(described[0]["partitions"], key=lambda p: p["partition"])
        ids = [p["partition"] for p in partitions]
        chosen = DefaultPartitioner()(store_key(store), ids, ids)
        return int(next(p["leader"] for p in partitions if p["partition"] == chosen))
