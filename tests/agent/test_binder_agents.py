"""The binder with real agents on the simulator: Node objects for two simulated nodes, their
agents publishing the rkt fingerprint label, the binder placing a task that names no node by
its nodeSelector; the task ends Running on the matching node, `kubectl get rkt -o wide`
shows which, and the agent's own status writes keep the binder's Scheduled condition."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agentlib import StartAgent, condition, get, node, phase_is, pods, wait_task

from binderlib import BinderProcess, apply_all, delete_nodes, make_node, unbound_task
from rkt_devkit.kube import Kubectl, get_json, unique_name, wait_for

pytestmark = pytest.mark.k8s


@pytest.fixture
def run() -> str:
    return unique_name("placed", max_length=20)


@pytest.fixture
def nodes(kubectl: Kubectl, run: str) -> Iterator[list[str]]:
    names = [f"{run}-a", f"{run}-b"]
    # No rktoperator.io/rkt label from the test: the agents publish it.
    make_node(kubectl, names[0], run, labels={"disk": "hdd"}, rkt=False)
    make_node(kubectl, names[1], run, labels={"disk": "ssd"}, rkt=False)
    yield names
    delete_nodes(kubectl, names)


def test_task_with_a_node_selector_runs_on_the_matching_node(
    kubectl: Kubectl,
    kubeconfig: Path,
    namespace: str,
    run: str,
    nodes: list[str],
    start_agent: StartAgent,
    images: dict[str, Path],
    tmp_path: Path,
) -> None:
    sims = [node(name, tmp_path) for name in nodes]
    for sim in sims:
        start_agent(sim)

    def fingerprinted() -> bool:
        labels = [
            ((get_json(kubectl, "node", n) or {}).get("metadata") or {}).get("labels") or {}
            for n in nodes
        ]
        return all(lab.get("rktoperator.io/rkt") == "true" for lab in labels)

    wait_for(fingerprinted, timeout=120, what="the agents' rktoperator.io/rkt=true labels")
    binder = BinderProcess(
        kubeconfig=kubeconfig,
        log_path=tmp_path / "binder.log",
        lease_namespace=namespace,
        identity="agents-test",
    ).start()
    try:
        manifest = unbound_task("web", run, image=str(images["service"]), insecureOptions=["image"])
        manifest["spec"]["nodeSelector"]["disk"] = "ssd"
        apply_all(kubectl, namespace, [manifest])
        obj = wait_task(kubectl, namespace, "web", phase_is("Running"), what="Running")
        assert obj["spec"]["nodeName"] == nodes[1]
        assert obj["status"]["nodeName"] == nodes[1]  # written by that node's agent
        assert condition(obj, "Ready")["status"] == "True"
        scheduled = condition(obj, "Scheduled")
        assert scheduled["status"] == "True", obj["status"]
        assert scheduled["reason"] == "Scheduled"
        table = kubectl("get", "rkt", "web", f"--namespace={namespace}", "-o", "wide").stdout
        assert nodes[1] in table.splitlines()[1]
        # Only the chosen node's agent started a pod.
        assert [p["state"] for p in pods(sims[1])] == ["running"]
        assert pods(sims[0]) == []
        # After more agent writes (resyncs), Scheduled is still there.
        later = get(kubectl, namespace, "web")
        assert condition(later, "Scheduled")["status"] == "True"
    finally:
        binder.stop()
