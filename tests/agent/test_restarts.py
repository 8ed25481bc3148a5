"""Agent restarts and several agents: running pods are adopted (never duplicated, never
lost), exits that happened while the agent was down are reported, a start cut short by
SIGKILL is completed by the next agent, and two agents only touch their own node's tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agentlib import (
    StartAgent,
    apply,
    get,
    live_pods,
    node,
    phase_is,
    pods,
    set_faults,
    task,
    task_dir,
    wait_resyncs,
    wait_task,
)

from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, unique_name, wait_for

pytestmark = pytest.mark.k8s


def test_restarted_agent_adopts_the_running_pod(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    agent = start_agent(sim_node)
    apply(kubectl, namespace, task("keep", sim_node.name, images["service"]))
    before = wait_task(kubectl, namespace, "keep", phase_is("Running"), what="Running")
    # A restarted agent remembers no handled spec: kopf calls the create handler (the same
    # reconcile as resume). The log file goes on across the restart.
    handled = "Handler 'create' succeeded"
    first_run = agent.log().count(handled)
    agent.kill()
    agent.start()
    wait_for(lambda: agent.log().count(handled) > first_run, what="reconciled again")
    after = get(kubectl, namespace, "keep")
    assert after is not None
    assert after["status"]["uuid"] == before["status"]["uuid"]
    assert after["status"]["phase"] == "Running"
    assert [p["name"] for p in pods(sim_node)] == [before["status"]["uuid"]]
    assert after["status"]["restarts"] == 0


def test_exit_while_the_agent_is_down_is_reported_after_restart(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    agent = start_agent(sim_node)
    apply(
        kubectl, namespace, task("quit", sim_node.name, images["stoppable"], restartPolicy="Never")
    )
    obj = wait_task(kubectl, namespace, "quit", phase_is("Running"), what="Running")
    uuid = obj["status"]["uuid"]
    agent.kill()
    stop_file = task_dir(sim_node, namespace, "quit", obj["metadata"]["uid"]) / "alloc" / "stop"
    stop_file.write_text("4")
    wait_for(lambda: [p["state"] for p in pods(sim_node)] == ["exited"], what="the pod to exit")
    unchanged = get(kubectl, namespace, "quit")
    assert unchanged is not None
    assert unchanged["status"]["phase"] == "Running"  # nobody was there to notice
    agent.start()
    done = wait_task(kubectl, namespace, "quit", phase_is("Failed"), what="Failed")
    assert done["status"]["uuid"] == uuid
    assert done["status"]["exitCode"] == 4
    assert done["status"]["finishedAt"]
    assert len(pods(sim_node)) == 1  # reported, not restarted (restartPolicy Never)


# prepare: before the pod exists for rkt list; run-prepared: launched, not yet running;
# status: running, while the agent discovers its network, before any status names the pod.
@pytest.mark.parametrize("command", ["prepare", "run-prepared", "status"])
def test_agent_killed_mid_start_restarts_without_duplicates(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
    command: str,
) -> None:
    # The next rkt command of that kind takes a few seconds: kill the agent meanwhile.
    set_faults(sim_node, {command: [{"action": "slow", "seconds": 4}]})
    agent = start_agent(sim_node)
    apply(kubectl, namespace, task("mid", sim_node.name, images["service"]))
    wait_for(
        lambda: str(sim_node.rkt_dir) in _processes(command),
        what=f"rkt {command} under way",
    )
    agent.kill()
    agent.start()
    obj = wait_task(kubectl, namespace, "mid", phase_is("Running"), what="Running")
    running = live_pods(sim_node)
    assert [p["name"] for p in running] == [obj["status"]["uuid"]]
    # whatever the killed start left behind is not a second live pod
    assert len([p for p in pods(sim_node) if p.get("state") in ("running", "prepared")]) == 1


def _processes(command: str) -> str:
    import psutil

    lines = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(part == command for part in cmdline):
            lines.append(" ".join(cmdline))
    return "\n".join(lines)


def test_two_agents_each_touch_only_their_own_tasks(
    kubectl: Kubectl,
    namespace: str,
    start_agent: StartAgent,
    images: dict[str, Path],
    tmp_path: Path,
) -> None:
    first = node(unique_name("n-one", max_length=30), tmp_path)
    second = node(unique_name("n-two", max_length=30), tmp_path)
    start_agent(first)
    start_agent(second)
    apply(kubectl, namespace, task("a1", first.name, images["service"]))
    apply(kubectl, namespace, task("a2", first.name, images["service"]))
    apply(kubectl, namespace, task("b1", second.name, images["service"]))
    objs = {
        name: wait_task(kubectl, namespace, name, phase_is("Running"), what="Running")
        for name in ("a1", "a2", "b1")
    }
    for name, obj in objs.items():
        expected = first.name if name.startswith("a") else second.name
        assert obj["status"]["nodeName"] == expected
    first_pods = {p["name"] for p in pods(first)}
    second_pods = {p["name"] for p in pods(second)}
    assert first_pods == {objs["a1"]["status"]["uuid"], objs["a2"]["status"]["uuid"]}
    assert second_pods == {objs["b1"]["status"]["uuid"]}
    # each agent only ever logged its own tasks
    assert f"{namespace}/b1" not in first.agent_log.read_text()
    assert f"{namespace}/a1" not in second.agent_log.read_text()
    # deleting one node's task leaves the other node alone
    kubectl("delete", f"--namespace={namespace}", "rkt/b1", "--timeout=180s")
    assert pods(second) == []
    assert {p["name"] for p in pods(first)} == first_pods


def test_label_selector_mode_serves_labelled_tasks_only(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    agent = start_agent(sim_node, "--selector=label", "--log-level=DEBUG")
    labelled = task("lab", sim_node.name, images["service"])
    labelled["metadata"]["labels"] = {"rktoperator.io/node": sim_node.name}
    apply(kubectl, namespace, labelled)
    apply(kubectl, namespace, task("nolab", sim_node.name, images["service"]))
    obj = wait_task(kubectl, namespace, "lab", phase_is("Running"), what="Running")
    assert [p["name"] for p in pods(sim_node)] == [obj["status"]["uuid"]]
    wait_resyncs(agent, namespace, "lab", 3)
    assert f"{namespace}/nolab" not in agent.log()
    untouched = get(kubectl, namespace, "nolab")
    assert untouched is not None
    assert "status" not in untouched
    assert "finalizers" not in untouched["metadata"]


def test_fingerprint_labels_published_on_the_node(
    kubectl: Kubectl,
    sim_node: SimNode,
    start_agent: StartAgent,
) -> None:
    kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": sim_node.name}}
    ))  # fmt: skip
    try:
        start_agent(sim_node)

        def labels() -> dict[str, str] | None:
            done = kubectl("get", "node", sim_node.name, "-o", "json")
            found = json.loads(done.stdout)["metadata"].get("labels") or {}
            return found if found.get("rktoperator.io/rkt") == "true" else None

        found = wait_for(labels, what="fingerprint labels")
        assert found["rktoperator.io/rkt.version"]
        assert found["rktoperator.io/appc.version"]
    finally:
        kubectl("delete", "node", sim_node.name, "--wait=false", check=False)


def test_liveness_endpoint_reports_the_fingerprint(
    sim_node: SimNode, start_agent: StartAgent
) -> None:
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start_agent(sim_node, f"--liveness-endpoint=http://127.0.0.1:{port}/healthz")

    def probe() -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as rsp:
                body = json.loads(rsp.read())
        except OSError:
            return None
        rkt = body.get("rkt") if isinstance(body, dict) else None
        return body if isinstance(rkt, dict) and rkt.get("healthy") is not None else None

    body = wait_for(probe, what="the liveness endpoint")
    assert body["rkt"]["healthy"] is True
    assert "rkt 1." in body["rkt"]["description"]
