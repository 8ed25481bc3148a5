"""Fixtures of the agent tests: test images (ACI files), a simulated node per test and a
factory for agent subprocesses that are always stopped (and their pods removed) afterwards."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from agentlib import Agent, StartAgent, node

from rkt_devkit.aci import build_aci
from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import unique_name

# A service that waits for /alloc/stop, then exits with the code written in it.
STOPPABLE = "while [ ! -f /alloc/stop ]; do sleep 0.2; done; exit $(cat /alloc/stop)"


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    return {
        "service": build_aci(
            root / "service.aci",
            name="example.com/service",
            exec=["/bin/sleep", "3600"],
            ports=[{"name": "http", "protocol": "tcp", "port": 8080}],
        ),
        "batch": build_aci(
            root / "batch.aci", name="example.com/batch", exec=["/bin/sh", "-c", "echo done"]
        ),
        "fail": build_aci(
            root / "fail.aci", name="example.com/fail", exec=["/bin/sh", "-c", "exit 3"]
        ),
        "envdump": build_aci(
            root / "envdump.aci",
            name="example.com/envdump",
            exec=["/bin/sh", "-c", "env > /alloc/env.txt; sleep 3600"],
        ),
        "stoppable": build_aci(
            root / "stoppable.aci", name="example.com/stoppable", exec=["/bin/sh", "-c", STOPPABLE]
        ),
        "stubborn": build_aci(
            root / "stubborn.aci",
            name="example.com/stubborn",
            exec=["/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"],
        ),
    }


@pytest.fixture
def node_name(request: pytest.FixtureRequest) -> str:
    return unique_name(f"n-{request.node.name}", max_length=40)


@pytest.fixture
def sim_node(node_name: str, tmp_path: Path) -> SimNode:
    return node(node_name, tmp_path)


@pytest.fixture
def start_agent(kubeconfig: Path, tmp_path: Path) -> Iterator[StartAgent]:
    """``start_agent(sim_node, *extra_flags)``: a running agent; all are stopped at the end
    and every pod of their nodes is removed."""
    started: list[Agent] = []

    def start(sim: SimNode, *extra: str, env: dict[str, str] | None = None) -> Agent:
        agent = Agent(node=sim, kubeconfig=kubeconfig, extra=tuple(extra), env_extra=env or {})
        started.append(agent.start())
        return agent

    yield start
    nodes: list[SimNode] = []
    for agent in started:
        agent.stop()
        if agent.node not in nodes:
            nodes.append(agent.node)
    for sim in nodes:
        sim.remove_pods()


def make_nodes(names: Sequence[str], root: Path) -> list[SimNode]:
    return [node(n, root) for n in names]
