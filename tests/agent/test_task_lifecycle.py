"""The agent's lifecycle paths against the real API server and the rkt simulator: the agent
runs as a subprocess (``rkt-operator run``) and is driven with kubectl only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from agentlib import (
    WAIT,
    StartAgent,
    apply,
    condition,
    events,
    get,
    live_pods,
    phase_is,
    pods,
    rkttask_writes,
    task,
    task_dir,
    wait_resyncs,
    wait_task,
)

from rkt_devkit.controlplane import ControlPlane
from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, wait_for

pytestmark = pytest.mark.k8s


def test_service_task_becomes_ready_with_uuid_ip_and_ports(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    start_agent(sim_node)
    apply(
        kubectl,
        namespace,
        task("web", sim_node.name, images["service"], ports=[{"name": "http", "hostPort": 18080}]),
    )
    kubectl(
        "wait",
        f"--namespace={namespace}",
        "--for=condition=Ready",
        "rkt/web",
        f"--timeout={WAIT:.0f}s",
    )
    obj = get(kubectl, namespace, "web")
    assert obj is not None
    status = obj["status"]
    assert status["phase"] == "Running"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["nodeName"] == sim_node.name
    assert status["portMap"] == {"http": 8080}
    assert status["ports"] == [
        {"name": "http", "containerPort": 8080, "hostPort": 18080, "protocol": "TCP"}
    ]
    assert status["portSummary"] == "http:18080->8080/TCP"
    assert status["restarts"] == 0
    assert status["startedAt"]
    assert condition(obj, "Reconciling")["status"] == "False"
    assert condition(obj, "Stalled")["status"] == "False"
    running = live_pods(sim_node)
    assert [p["name"] for p in running] == [status["uuid"]]
    assert running[0]["state"] == "running"
    networks = running[0].get("networks") or []
    assert status["ip"] in [n.get("ip") for n in networks]
    assert "rktoperator.io/finalizer" in obj["metadata"]["finalizers"]
    story = [(e["reason"], e["message"]) for e in events(kubectl, namespace, "web")]
    reasons = [reason for reason, _ in story]
    assert "Starting" in reasons
    assert "PodRunning" in reasons
    # Two status writes tell the story: accepted at first sight, then running (no write
    # between rkt prepare and the launch: the pod carries the task's identity).
    assert story.count(("Starting", "accepted by the node agent")) == 1
    assert ("PodRunning", f"pod {status['uuid']} is running at {status['ip']}") in story
    assert len(story) == 2, story


def test_batch_task_succeeds_with_exit_code_0(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    start_agent(sim_node)
    apply(kubectl, namespace, task("job", sim_node.name, images["batch"], restartPolicy="Never"))
    obj = wait_task(kubectl, namespace, "job", phase_is("Succeeded"), what="Succeeded")
    status = obj["status"]
    assert status["exitCode"] == 0
    assert status["finishedAt"]
    assert status["restarts"] == 0
    assert condition(obj, "Ready")["reason"] == "PodSucceeded"
    assert condition(obj, "Reconciling")["status"] == "False"
    # the exited pod is kept (not started again)
    assert [p["state"] for p in pods(sim_node)] == ["exited"]


def test_failing_task_fails_with_exit_code_and_message(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    start_agent(sim_node)
    apply(kubectl, namespace, task("bad", sim_node.name, images["fail"], restartPolicy="Never"))
    obj = wait_task(kubectl, namespace, "bad", phase_is("Failed"), what="Failed")
    status = obj["status"]
    assert status["exitCode"] == 3
    stalled = condition(obj, "Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "PodFailed"
    assert stalled["message"] == f"pod {status['uuid']} failed with exit code 3"
    assert condition(obj, "Ready")["status"] == "False"
    warnings = [e for e in events(kubectl, namespace, "bad") if e["type"] == "Warning"]
    assert any(e["reason"] == "PodFailed" and "exit code 3" in e["message"] for e in warnings)


def test_spec_the_node_refuses_is_stalled_not_retried_until_fixed(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
    tmp_path: Path,
) -> None:
    agent = start_agent(sim_node, "--volumes-enabled=false", "--log-level=DEBUG")
    volume = {"name": "data", "hostPath": str(tmp_path), "mountPath": "/data"}
    apply(kubectl, namespace, task("vol", sim_node.name, images["service"], volumes=[volume]))
    obj = wait_task(
        kubectl,
        namespace,
        "vol",
        lambda o: condition(o, "Stalled").get("status") == "True",
        what="Stalled",
    )
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "InvalidSpec"
    assert stalled["message"].startswith("spec.volumes")
    assert obj["status"]["phase"] == "Failed"
    assert condition(obj, "Reconciling")["status"] == "False"
    assert pods(sim_node) == []
    described = kubectl("describe", f"--namespace={namespace}", "rkt/vol").stdout
    assert "InvalidSpec" in described
    assert any(e["reason"] == "InvalidSpec" for e in events(kubectl, namespace, "vol"))
    # Not retried: several resyncs later, no write, no pod and a single InvalidSpec event.
    # (kopf remembers the handled spec in the agent's memory: nothing more is written.)
    wait_resyncs(agent, namespace, "vol", 1)
    settled = get(kubectl, namespace, "vol")
    assert settled is not None
    assert "rktoperator.io/last-handled-configuration" not in (
        settled["metadata"].get("annotations") or {}
    )
    wait_resyncs(agent, namespace, "vol", 3)
    again = get(kubectl, namespace, "vol")
    assert again is not None
    assert again["metadata"]["resourceVersion"] == settled["metadata"]["resourceVersion"], (
        settled,
        again,
    )
    assert pods(sim_node) == []
    assert [e["reason"] for e in events(kubectl, namespace, "vol")].count("InvalidSpec") == 1
    # Fixing the spec (a new generation) is acted on at once.
    kubectl(
        "patch", f"--namespace={namespace}", "rkt/vol", "--type=json",
        "-p", '[{"op":"remove","path":"/spec/volumes"}]',
    )  # fmt: skip
    fixed = wait_task(kubectl, namespace, "vol", phase_is("Running"), what="Running")
    assert condition(fixed, "Stalled")["status"] == "False"
    assert [p["name"] for p in live_pods(sim_node)] == [fixed["status"]["uuid"]]


def test_update_replaces_the_pod_and_kill_timeout_alone_does_not(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    start_agent(sim_node)
    apply(kubectl, namespace, task("upd", sim_node.name, images["service"]))
    first = wait_task(kubectl, namespace, "upd", phase_is("Running"), what="Running")
    uuid1 = first["status"]["uuid"]

    # killTimeoutSeconds alone: applied live, same pod, observedGeneration follows.
    kubectl(
        "patch", f"--namespace={namespace}", "rkt/upd", "--type=merge",
        "-p", '{"spec":{"killTimeoutSeconds":9}}',
    )  # fmt: skip
    second = wait_task(kubectl, namespace, "upd", phase_is("Running"), what="generation 2")
    assert second["metadata"]["generation"] == 2
    assert second["status"]["uuid"] == uuid1
    assert [p["name"] for p in live_pods(sim_node)] == [uuid1]

    # A real change (args): the old pod stops, a new one runs; never two live pods after.
    kubectl(
        "patch", f"--namespace={namespace}", "rkt/upd", "--type=merge",
        "-p", '{"spec":{"args":["600"]}}',
    )  # fmt: skip
    third = wait_task(kubectl, namespace, "upd", phase_is("Running"), what="generation 3")
    assert third["metadata"]["generation"] == 3
    uuid3 = third["status"]["uuid"]
    assert uuid3 != uuid1
    assert [p["name"] for p in live_pods(sim_node)] == [uuid3]
    assert uuid1 not in [p["name"] for p in pods(sim_node)]  # stopped and removed
    assert condition(third, "Ready")["observedGeneration"] == 3
    reasons = [e["reason"] for e in events(kubectl, namespace, "upd")]
    assert "Replacing" in reasons
    assert "Stopping" in reasons


@pytest.mark.parametrize(
    ("image", "policy"), [("fail", "OnFailure"), ("batch", "Always")], ids=["OnFailure", "Always"]
)
def test_restart_policy_restarts_with_backoff_and_counts(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
    image: str,
    policy: str,
) -> None:
    agent = start_agent(sim_node)
    apply(kubectl, namespace, task("loop", sim_node.name, images[image], restartPolicy=policy))

    def restarted_three_times() -> bool:
        # Events are posted after the status write of the same pass: wait for both.
        obj = get(kubectl, namespace, "loop")
        restarts = int(((obj or {}).get("status") or {}).get("restarts") or 0)
        story = events(kubectl, namespace, "loop")
        return restarts >= 3 and sum(e["reason"] == "Restarting" for e in story) >= 3

    wait_for(restarted_three_times, timeout=WAIT, interval=0.5, what="three restarts")
    story = events(kubectl, namespace, "loop")
    expected_code = 3 if image == "fail" else 0
    # Every restart names the exit that caused it, whatever the timing of the observation.
    restarting = [e["message"] for e in story if e["reason"] == "Restarting"]
    assert len(restarting) >= 3, restarting
    assert all(f"exited with code {expected_code}" in m for m in restarting), restarting
    # The back-off doubles (1s, 2s, 4s...). An exit seen only after its back-off has run
    # out is restarted at once, so a loaded machine may skip the short delays; the waits
    # that were reported are the doubling sequence, in order.
    backoff_messages = [e["message"] for e in story if e["reason"] == "CrashLoopBackOff"]
    assert backoff_messages, story
    assert all(f"exit code {expected_code}" in m for m in backoff_messages)
    delays = [int(d) for m in backoff_messages for d in re.findall(r"back-off (\d+)s", m)]
    assert len(delays) == len(backoff_messages), backoff_messages
    assert delays == sorted(delays), delays
    assert set(delays) <= {1, 2, 4, 8}, delays
    # old exited pods are removed when the next one starts: never a pile-up, never two live
    assert len(pods(sim_node)) <= 2
    assert len(live_pods(sim_node)) <= 1
    assert "Traceback" not in agent.log()


def test_delete_stops_removes_and_releases(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    start_agent(sim_node)
    apply(kubectl, namespace, task("gone", sim_node.name, images["service"], killTimeoutSeconds=2))
    obj = wait_task(kubectl, namespace, "gone", phase_is("Running"), what="Running")
    uid = obj["metadata"]["uid"]
    directory = task_dir(sim_node, namespace, "gone", uid)
    assert directory.is_dir()
    kubectl("delete", f"--namespace={namespace}", "rkt/gone", f"--timeout={WAIT:.0f}s")
    assert get(kubectl, namespace, "gone") is None  # finalizer removed, object gone
    assert pods(sim_node) == []
    assert not directory.exists()
    reasons = [e["reason"] for e in events(kubectl, namespace, "gone")]
    assert "Stopping" in reasons
    assert "Deleted" in reasons


def test_delete_forces_a_pod_that_ignores_stop(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    start_agent(sim_node)
    apply(
        kubectl, namespace, task("tough", sim_node.name, images["stubborn"], killTimeoutSeconds=1)
    )
    wait_task(kubectl, namespace, "tough", phase_is("Running"), what="Running")
    kubectl("delete", f"--namespace={namespace}", "rkt/tough", f"--timeout={WAIT:.0f}s")
    assert get(kubectl, namespace, "tough") is None
    assert pods(sim_node) == []


def test_few_api_writes_from_apply_to_running(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    agent = start_agent(sim_node, "--log-level=DEBUG")
    # Let the agent settle (its start-up makes no rkttask writes of its own).
    wait_for(lambda: "Initial authentication has finished" in sim_node.agent_log.read_text(),
             what="agent up")  # fmt: skip
    before = rkttask_writes(control_plane.metrics())
    apply(kubectl, namespace, task("count", sim_node.name, images["service"]))
    wait_task(kubectl, namespace, "count", phase_is("Running"), what="Running")
    wait_resyncs(agent, namespace, "count", 3)  # idle resyncs must not write
    after = rkttask_writes(control_plane.metrics())
    patches = after.get("PATCH", 0) - before.get("PATCH", 0)
    # finalizer, Reconciling (first sight), Running with the pod's UUID and IP; kopf keeps
    # its diff-base in the agent's memory (no annotation)
    assert patches <= 3, (before, after)
    assert after.get("PUT", 0) == before.get("PUT", 0)
