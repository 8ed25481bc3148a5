"""An agent given a namespace list serves only those namespaces, and its JSON logs are JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentlib import Agent, StartAgent, apply, get, phase_is, pods, task, wait_task

from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, unique_name, wait_for

pytestmark = pytest.mark.k8s


def _agent_lines(agent: Agent) -> list[str]:
    """The agent's own output (without the harness's "--- agent start" markers)."""
    return [
        line
        for line in agent.log().splitlines()
        if line.strip() and not line.startswith("--- agent start")
    ]


def _json_resyncs(agent: Agent, namespace: str, name: str) -> int:
    """Resync ticks of one task in the agent's JSON log (the object is a structured field)."""
    count = 0
    for line in _agent_lines(agent):
        record = json.loads(line)
        obj = record.get("object") or {}
        if str(record.get("message", "")).startswith("resync pass done") and (
            obj.get("namespace"),
            obj.get("name"),
        ) == (namespace, name):
            count += 1
    return count


@pytest.fixture
def other_namespace(kubectl: Kubectl) -> Iterator[str]:
    name = unique_name("other", max_length=40)
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_namespace_list_limits_the_agent_and_json_logs_parse(
    kubectl: Kubectl,
    namespace: str,
    other_namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    agent = start_agent(
        sim_node, f"--namespaces={namespace}", "--log-format=json", "--log-level=DEBUG"
    )
    apply(kubectl, other_namespace, task("outside", sim_node.name, images["service"]))
    apply(kubectl, namespace, task("inside", sim_node.name, images["service"]))
    inside = wait_task(kubectl, namespace, "inside", phase_is("Running"), what="Running")
    seen = _json_resyncs(agent, namespace, "inside")
    wait_for(lambda: _json_resyncs(agent, namespace, "inside") >= seen + 2, what="2 resyncs")
    # Same node, other namespace: never touched (no status, no finalizer, no pod).
    outside = get(kubectl, other_namespace, "outside")
    assert outside is not None
    assert "status" not in outside
    assert not outside["metadata"].get("finalizers")
    assert [p["name"] for p in pods(sim_node)] == [inside["status"]["uuid"]]
    # Every log line is a JSON object; the per-object lines name the object.
    records = [json.loads(line) for line in _agent_lines(agent)]
    assert all(isinstance(r, dict) and "message" in r for r in records)
    assert other_namespace not in agent.log()
