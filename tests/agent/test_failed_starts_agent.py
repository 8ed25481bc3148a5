"""Failed starts that heal and restarts that are never lost, end to end (issue 16): the agent
process against a real kube-apiserver, on rkt-sim with fault injection.

- a ``rkt prepare`` that fails a few times on an ``Always`` task is retried with the
  back-off while the status says why, and the task runs without any spec change;
- an agent SIGKILLed after it removed a failed pod and while the restart's prepare is under
  way (so before it could record the new pod) loses nothing: the next agent counts the
  restart from the pod's stamp and posts its event.
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from agentlib import (
    StartAgent,
    apply,
    condition,
    events,
    get,
    live_pods,
    phase_is,
    set_faults,
    task,
    task_dir,
    wait_task,
)

from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, wait_for

pytestmark = pytest.mark.k8s


def rkt_processes(command: str) -> str:
    """The command lines of running processes with ``command`` as one of their words."""
    lines = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if command in cmdline:
            lines.append(" ".join(cmdline))
    return "\n".join(lines)


def test_a_transient_prepare_failure_heals_without_a_spec_change(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    refused = {"action": "fail", "stderr": "prepare: cannot acquire lock", "times": 3}
    set_faults(sim_node, {"prepare": [refused]})
    start_agent(sim_node)
    apply(kubectl, namespace, task("heal", sim_node.name, images["service"]))

    failing = wait_task(
        kubectl,
        namespace,
        "heal",
        lambda o: condition(o, "Reconciling").get("reason") == "PrepareFailed",
        what="the failed prepare reported",
    )
    assert condition(failing, "Reconciling")["status"] == "True"
    assert "cannot acquire lock" in condition(failing, "Reconciling")["message"]
    assert condition(failing, "Stalled")["status"] == "False"
    assert failing["status"]["startFailure"]["attempts"] >= 1

    healed = wait_task(kubectl, namespace, "heal", phase_is("Running"), what="Running")

    assert healed["metadata"]["generation"] == 1  # nobody touched the spec
    assert "startFailure" not in healed["status"]
    assert healed["status"]["restarts"] == 0
    assert condition(healed, "Ready")["status"] == "True"
    assert [p["name"] for p in live_pods(sim_node)] == [healed["status"]["uuid"]]
    failed = [e for e in events(kubectl, namespace, "heal") if e["reason"] == "PrepareFailed"]
    assert failed
    assert all(e["type"] == "Warning" for e in failed)


def test_a_restart_cut_short_by_sigkill_is_counted_by_the_next_agent(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    agent = start_agent(sim_node)
    apply(kubectl, namespace, task("count", sim_node.name, images["stoppable"]))
    first = wait_task(kubectl, namespace, "count", phase_is("Running"), what="Running")
    uid = first["metadata"]["uid"]
    stop_file = task_dir(sim_node, namespace, "count", uid) / "alloc" / "stop"
    # The restart's prepare will take a while: the agent is killed while it runs, after
    # it removed the exited pod and before it could record the new one.
    set_faults(sim_node, {"prepare": [{"action": "slow", "seconds": 5}]})
    stop_file.write_text("7")  # the app exits with 7

    wait_for(
        lambda: str(sim_node.rkt_dir) in rkt_processes("prepare"),
        timeout=60,
        what="the restart's rkt prepare under way",
    )
    agent.kill()
    stop_file.unlink()  # the next pod keeps running
    gone = get(kubectl, namespace, "count")
    assert gone is not None
    assert gone["status"]["restarts"] == 0  # the killed agent recorded nothing

    agent.start()
    after = wait_task(
        kubectl,
        namespace,
        "count",
        lambda o: (
            o["status"].get("phase") == "Running"
            and o["status"].get("uuid") != first["status"]["uuid"]
        ),
        what="the restarted pod running",
    )

    assert after["status"]["restarts"] == 1
    assert [p["name"] for p in live_pods(sim_node)] == [after["status"]["uuid"]]
    restarting = [e for e in events(kubectl, namespace, "count") if e["reason"] == "Restarting"]
    assert len(restarting) == 1, restarting
    assert "restart 1" in restarting[0]["message"]
