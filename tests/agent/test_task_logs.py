"""A task's output through the agent: the pod's log files follow ``spec.logs`` (a change of
logs alone keeps the pod and reaches its supervisor), and ``rkt-operator logs`` on the node
prints them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from agentlib import BIN, WAIT, StartAgent, apply, live_pods, phase_is, task, task_dir, wait_task

from rkt_devkit.aci import build_aci
from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, wait_for
from rkt_operator.executor import files
from rkt_operator.executor.logrotate import LogLimits

pytestmark = pytest.mark.k8s

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def talker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_aci(
        tmp_path_factory.mktemp("talker") / "talker.aci",
        name="example.com/talker",
        exec=["/bin/sh", "-c", "echo started; seq 1 3; echo oops >&2; sleep 3600"],
    )


def logs(node: SimNode, *args: str) -> subprocess.CompletedProcess[str]:
    """``rkt-operator logs`` with the node agent's settings, as ``kubectl exec`` would run it."""
    argv = [
        str(BIN / "rkt-operator"), "logs", *args,
        f"--rkt-path={node.rkt_sim}",
        f"--rkt-dir={node.rkt_dir}",
        f"--rkt-local-config={node.local_config}",
        f"--task-root={node.task_root}",
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, check=False)


def test_logs_command_and_a_live_change_of_the_limits(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    talker: Path,
) -> None:
    start_agent(sim_node)
    manifest = task("talk", sim_node.name, talker, logs={"maxFiles": 2, "maxFileSizeMB": 1})
    apply(kubectl, namespace, manifest)
    first = wait_task(kubectl, namespace, "talk", phase_is("Running"), what="Running")
    uuid = first["status"]["uuid"]
    root = task_dir(sim_node, namespace, "talk", first["metadata"]["uid"])
    limits_file = files.log_limits_file(root, uuid)
    assert files.read_log_limits(limits_file) == LogLimits(2, MIB)

    def printed() -> subprocess.CompletedProcess[str] | None:
        done = logs(sim_node, f"{namespace}/talk")
        return done if done.returncode == 0 and "3\n" in done.stdout else None

    done = wait_for(printed, timeout=WAIT, what="the task's output")
    assert done.stdout == "started\n1\n2\n3\n"
    assert files.log_files(root, uuid)[0].read_text() == done.stdout
    assert logs(sim_node, f"{namespace}/talk", "--stderr").stdout == "oops\n"
    assert logs(sim_node, f"{namespace}/talk", "--tail=1").stdout == "3\n"

    # logs alone: applied live, same pod; the supervisor's limits file follows.
    kubectl(
        "patch", f"--namespace={namespace}", "rkt/talk", "--type=merge",
        "-p", '{"spec":{"logs":{"maxFiles":5}}}',
    )  # fmt: skip
    second = wait_task(kubectl, namespace, "talk", phase_is("Running"), what="generation 2")
    assert second["metadata"]["generation"] == 2
    assert second["status"]["uuid"] == uuid
    wait_for(
        lambda: files.read_log_limits(limits_file) == LogLimits(5, MIB),
        timeout=WAIT,
        what="the new limits in the pod's limits file",
    )
    assert [p["name"] for p in live_pods(sim_node)] == [uuid]
