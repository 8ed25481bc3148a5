"""Readiness and liveness probes end to end: the agent (a subprocess) runs them inside the pods
of rkt-sim with ``rkt enter``, against the real API server. The probes look for files in the
task's /local directory, which the tests write on the host side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agentlib import (
    StartAgent,
    apply,
    condition,
    events,
    get,
    live_pods,
    phase_is,
    pods,
    task,
    task_dir,
    wait_task,
)

from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, wait_for

pytestmark = pytest.mark.k8s


def probe(script: str, **fields: Any) -> dict[str, Any]:
    # A generous timeout: every run starts rkt-sim, a Python program, on a shared machine.
    return {
        "exec": {"command": ["/bin/sh", "-c", script]},
        "periodSeconds": 1,
        "timeoutSeconds": 60,
        "failureThreshold": 1,
        **fields,
    }


def ready_is(status: str, reason: str) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready")
        return (
            phase_is("Running")(obj)
            and ready.get("status") == status
            and ready.get("reason") == reason
        )

    return check


def local_dir(sim_node: SimNode, namespace: str, obj: dict[str, Any]) -> Path:
    meta = obj["metadata"]
    return task_dir(sim_node, namespace, meta["name"], meta["uid"]) / "local"


def patch(kubectl: Kubectl, namespace: str, name: str, spec: dict[str, Any]) -> None:
    kubectl(
        "patch", f"--namespace={namespace}", f"rkt/{name}", "--type=merge",
        "-p", json.dumps({"spec": spec}),
    )  # fmt: skip


def test_readiness_probe_holds_ready_until_it_succeeds(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    agent = start_agent(sim_node, "--log-level=DEBUG")
    check = probe("cat /local/ready")
    apply(kubectl, namespace, task("gate", sim_node.name, images["service"], readinessProbe=check))
    unready = wait_task(
        kubectl, namespace, "gate", ready_is("False", "ProbeFailed"), what="ProbeFailed"
    )
    uuid = unready["status"]["uuid"]
    assert condition(unready, "Reconciling")["status"] == "False"
    assert condition(unready, "Stalled")["status"] == "False"
    assert condition(unready, "Ready")["message"].startswith(
        f"pod {uuid} is running at {unready['status']['ip']} but not ready: readiness probe "
        "failed: exit code 1: "
    )
    assert "/local/ready" in condition(unready, "Ready")["message"]  # cat's own complaint
    # The same outcome again and again writes nothing.
    runs = agent.log().count(f" enter {uuid} ")
    wait_for(lambda: agent.log().count(f" enter {uuid} ") >= runs + 3, what="three more runs")
    same = get(kubectl, namespace, "gate")
    assert same is not None
    assert same["metadata"]["resourceVersion"] == unready["metadata"]["resourceVersion"]

    (local_dir(sim_node, namespace, unready) / "ready").write_text("yes\n")
    ready = wait_task(kubectl, namespace, "gate", ready_is("True", "PodRunning"), what="Ready")
    assert ready["status"]["uuid"] == uuid
    assert ready["status"]["restarts"] == 0

    # Readiness comes and goes with the probe; the pod is never touched.
    (local_dir(sim_node, namespace, unready) / "ready").unlink()
    again = wait_task(kubectl, namespace, "gate", ready_is("False", "ProbeFailed"), what="unready")
    assert again["status"]["uuid"] == uuid
    assert [p["name"] for p in live_pods(sim_node)] == [uuid]
    story = [(e["type"], e["reason"]) for e in events(kubectl, namespace, "gate")]
    assert ("Warning", "ProbeFailed") in story
    assert ("Normal", "PodRunning") in story
    assert "Traceback" not in agent.log()


def test_liveness_failure_restarts_the_pod_with_restart_policy_always(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    start_agent(sim_node)
    check = probe("test ! -f /local/sick && echo fine || { echo feeling sick; exit 7; }")
    apply(kubectl, namespace, task("sick", sim_node.name, images["service"], livenessProbe=check))
    first = wait_task(kubectl, namespace, "sick", ready_is("True", "PodRunning"), what="Running")
    uuid1 = first["status"]["uuid"]
    local = local_dir(sim_node, namespace, first)

    (local / "sick").write_text("")
    restarted = wait_task(
        kubectl,
        namespace,
        "sick",
        lambda o: int((o.get("status") or {}).get("restarts") or 0) >= 1,
        what="a restart",
    )
    (local / "sick").unlink()
    healthy = wait_task(
        kubectl,
        namespace,
        "sick",
        lambda o: ready_is("True", "PodRunning")(o) and o["status"]["uuid"] != uuid1,
        what="running again in a new pod",
    )
    assert healthy["status"]["restarts"] >= restarted["status"]["restarts"] >= 1
    assert [p["name"] for p in live_pods(sim_node)] == [healthy["status"]["uuid"]]
    story = events(kubectl, namespace, "sick")
    unhealthy = [e for e in story if e["reason"] == "Unhealthy"]
    assert unhealthy
    assert unhealthy[0]["type"] == "Warning"
    assert unhealthy[0]["message"] == (
        f"Liveness probe failed: exit code 7: feeling sick; stopping pod {uuid1}"
    )
    backoff = [e["message"] for e in story if e["reason"] == "CrashLoopBackOff"]
    assert any(
        "it was stopped: LivenessProbeFailed: the liveness probe failed 1 time "
        "(exit code 7: feeling sick)" in m
        for m in backoff
    ), backoff
    assert "Restarting" in [e["reason"] for e in story]


def test_liveness_failure_fails_the_task_with_restart_policy_never(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    start_agent(sim_node)
    check = probe("test -f /local/alive", failureThreshold=2)
    spec = {"livenessProbe": check, "restartPolicy": "Never"}
    apply(kubectl, namespace, task("doomed", sim_node.name, images["service"], **spec))
    done = wait_task(kubectl, namespace, "doomed", phase_is("Failed"), what="Failed")
    uuid = done["status"]["uuid"]
    stalled = condition(done, "Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "LivenessProbeFailed"
    assert stalled["message"] == (
        f"pod {uuid} was stopped: LivenessProbeFailed: the liveness probe failed 2 times "
        "in a row (exit code 1); the agent stopped it with SIGTERM (rkt stop), rkt reported "
        "exit code 0"
    )
    # rkt says 0 for an app it stopped: the status says who stopped it and how.
    assert done["status"]["stopSignal"] == "SIGTERM"
    assert condition(done, "Ready")["status"] == "False"
    assert condition(done, "Reconciling")["status"] == "False"
    assert done["status"]["restarts"] == 0
    assert done["status"]["finishedAt"]
    assert [p["state"] for p in pods(sim_node)] == ["exited"]  # stopped, not started again
    reasons = [e["reason"] for e in events(kubectl, namespace, "doomed")]
    assert "Unhealthy" in reasons
    assert "LivenessProbeFailed" in reasons


def test_changing_only_the_probes_keeps_the_pod(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    start_agent(sim_node)
    apply(kubectl, namespace, task("keep", sim_node.name, images["service"]))
    first = wait_task(kubectl, namespace, "keep", ready_is("True", "PodRunning"), what="Running")
    uuid = first["status"]["uuid"]
    local = local_dir(sim_node, namespace, first)

    # Adding a readiness probe that fails: same pod, not ready any more.
    patch(kubectl, namespace, "keep", {"readinessProbe": probe("test -f /local/ready")})
    gated = wait_task(kubectl, namespace, "keep", ready_is("False", "ProbeFailed"), what="gated")
    assert gated["metadata"]["generation"] == 2
    assert gated["status"]["uuid"] == uuid

    # Changing it, and adding a liveness probe: still the same pod, ready again.
    (local / "ok").write_text("")
    patch(
        kubectl,
        namespace,
        "keep",
        {
            "readinessProbe": probe("test -f /local/ok", successThreshold=2),
            "livenessProbe": probe("true", periodSeconds=2),
        },
    )
    ready = wait_task(
        kubectl,
        namespace,
        "keep",
        lambda o: ready_is("True", "PodRunning")(o) and o["metadata"]["generation"] == 3,
        what="ready at generation 3",
    )
    assert ready["status"]["uuid"] == uuid
    assert condition(ready, "Ready")["observedGeneration"] == 3

    # Removing the probes: same pod, ready without them.
    patch(kubectl, namespace, "keep", {"readinessProbe": None, "livenessProbe": None})
    plain = wait_task(
        kubectl,
        namespace,
        "keep",
        lambda o: ready_is("True", "PodRunning")(o) and o["metadata"]["generation"] == 4,
        what="generation 4",
    )
    assert plain["status"]["uuid"] == uuid
    assert plain["status"]["restarts"] == 0
    assert [p["name"] for p in pods(sim_node)] == [uuid]
    reasons = [e["reason"] for e in events(kubectl, namespace, "keep")]
    assert "Replacing" not in reasons
    assert "Stopping" not in reasons
