"""Behaviours the Nomad driver had that an outside check found missing or contradicting the
README, checked through a real agent on the simulator: a task whose mapped ports never get
an address is refused for good (no second prepare, no pod left behind); every task gets the
task environment (directories and identity) that spec.env can override; a pod the agent
stops says so, with the signal, rather than a plain exit code 0; ``rkt-operator
exec`` forwards stdin, keeps stdout and stderr apart and has a TTY mode."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentlib import (
    BIN,
    StartAgent,
    apply,
    condition,
    get,
    phase_is,
    pods,
    task,
    task_dir,
    wait_task,
)

import realrkt
from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import Kubectl, wait_for
from rkt_devkit.netd import user_network

pytestmark = pytest.mark.k8s


@pytest.fixture
def link_local_network(namespace: str) -> Iterator[str]:
    """A CNI network whose addresses are link-local: rkt reports them, discovery skips them
    (only global-unicast addresses count), so a pod on it never gets an IP. Written where
    rkt's run-prepared reads user networks (the host's /etc/rkt/net.d), removed after."""
    realrkt.require_root("writing /etc/rkt/net.d")
    name = f"ll{namespace[-8:]}".replace("-", "")
    conf = {"type": "ptp", "ipam": {"type": "host-local", "subnet": "169.254.77.0/24"}}
    with user_network(name, conf):
        yield name


def test_mapped_ports_without_an_address_stall_once_and_leave_no_pod(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
    link_local_network: str,
) -> None:
    net = link_local_network
    start_agent(sim_node, "--discovery-timeout-seconds=2", "--resync-interval-seconds=1")
    apply(
        kubectl,
        namespace,
        task("nonet", sim_node.name, images["service"], net=[net], ports=[{"name": "http"}]),
    )
    obj = wait_task(
        kubectl, namespace, "nonet",
        lambda o: condition(o, "Stalled").get("status") == "True",
        what="Stalled",
    )  # fmt: skip
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "NetworkUnknown"
    assert (
        "Trying to map ports but driver could not determine network information"
        in (stalled["message"])
    )
    assert "no good driver networks out of 1 returned" in stalled["message"]
    first_uuid = obj["status"].get("uuid")
    # Several resyncs later: still one attempt (the UUID of the first prepare), no pod.
    time.sleep(5)
    later = get(kubectl, namespace, "nonet")
    assert later is not None
    assert later["status"].get("uuid") == first_uuid
    assert condition(later, "Stalled")["status"] == "True"
    assert pods(sim_node) == []


def _exec(node: SimNode, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``rkt-operator exec`` as an admin runs it on the node, with ``stdin`` piped in."""
    flags = [
        f"--rkt-path={node.rkt_sim}", f"--rkt-dir={node.rkt_dir}",
        f"--rkt-local-config={node.local_config}", f"--task-root={node.task_root}",
        "--launcher=detached", "--log-level=WARNING",
    ]  # fmt: skip
    env = {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run(
        [str(BIN / "rkt-operator"), "exec", *flags, *args],
        input=stdin, capture_output=True, text=True, timeout=180, check=False, env=env,
    )  # fmt: skip


def test_exec_forwards_stdin_keeps_streams_apart_and_offers_a_tty(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    start_agent(sim_node)
    apply(kubectl, namespace, task("shell", sim_node.name, images["service"]))
    wait_task(kubectl, namespace, "shell", phase_is("Running"), what="Running")
    ref = f"{namespace}/shell"

    piped = _exec(sim_node, ref, "--", "/bin/sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3",
                  stdin="hello\nworld\n")  # fmt: skip
    assert piped.returncode == 3, piped.stderr
    assert piped.stdout == "HELLO\nWORLD\n"
    # The command's stderr, apart, and nothing else (the node command logs nothing of its own).
    assert piped.stderr == "oops\n"
    no_tty = _exec(sim_node, ref, "--", "/bin/sh", "-c", "test -t 0 || echo no-tty")
    assert no_tty.stdout == "no-tty\n"

    on_tty = _exec(
        sim_node, ref, "-t", "--", "/bin/sh", "-c",
        "test -t 0 && test -t 1 && echo tty-in-out; read line; echo got=$line; echo e >&2",
        stdin="typed\n",
    )  # fmt: skip
    assert on_tty.returncode == 0, on_tty.stderr
    lines = on_tty.stdout.replace("\r\n", "\n").splitlines()
    assert "tty-in-out" in lines
    assert "got=typed" in lines
    assert "e" in lines  # one stream on a terminal
    assert on_tty.stderr == ""


def test_every_task_gets_its_directories_and_identity_and_spec_env_wins(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    start_agent(sim_node)
    env = [{"name": "RKT_TASK_DIR", "value": "/overridden"}, {"name": "OWN", "value": "x"}]
    apply(kubectl, namespace, task("envtask", sim_node.name, images["envdump"], env=env))
    obj = wait_task(kubectl, namespace, "envtask", phase_is("Running"), what="Running")
    path = task_dir(sim_node, namespace, "envtask", obj["metadata"]["uid"]) / "alloc" / "env.txt"
    text = wait_for(lambda: path.exists() and path.read_text(), what=str(path))
    seen = dict(line.split("=", 1) for line in str(text).splitlines() if "=" in line)
    assert seen["RKT_ALLOC_DIR"] == "/alloc"
    assert seen["RKT_SECRETS_DIR"] == "/secrets"
    assert seen["RKT_TASK_NAME"] == "envtask"
    assert seen["RKT_TASK_NAMESPACE"] == namespace
    assert seen["RKT_TASK_UID"] == obj["metadata"]["uid"]
    assert seen["RKT_NODE_NAME"] == sim_node.name
    assert seen["RKT_TASK_DIR"] == "/overridden"  # spec.env wins
    assert seen["OWN"] == "x"


def test_a_pod_the_agent_had_to_kill_says_sigkill_not_a_plain_exit(
    kubectl: Kubectl,
    namespace: str,
    sim_node: SimNode,
    start_agent: StartAgent,
    images: dict[str, Path],
) -> None:
    start_agent(sim_node)
    failing = {"exec": {"command": ["/bin/false"]}, "periodSeconds": 1, "failureThreshold": 1}
    spec = {"livenessProbe": failing, "restartPolicy": "Never", "killTimeoutSeconds": 1}
    # The app ignores SIGTERM: rkt stop is not enough, the agent forces it after 1 s.
    apply(kubectl, namespace, task("deaf", sim_node.name, images["stubborn"], **spec))
    done = wait_task(kubectl, namespace, "deaf", phase_is("Failed"), what="Failed")
    assert done["status"]["stopSignal"] == "SIGKILL"
    message = condition(done, "Stalled")["message"]
    assert "the agent killed it with SIGKILL (rkt stop --force, after the kill timeout)" in message
    assert done["status"]["message"] == message
