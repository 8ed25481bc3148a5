"""The agent works with nothing but the chart's RBAC.

The chart is installed with helm; the DaemonSet it created is read back from the API server,
and the agent is started exactly as that DaemonSet describes it: its command and args, its
env with the downward-API values filled in the way the kubelet would (``NODE_NAME`` from
``spec.nodeName``, ``POD_NAME``, ``POD_NAMESPACE``), and the identity of the chart's
ServiceAccount (a TokenRequest token bound to a Pod on the node, as the kubelet would mount
it, so that the chart's node-confinement policy lets it write the node's tasks). A task is
then run to ``Ready`` and deleted through that agent, so every API call of a task's life
goes through the ClusterRole and the policy; any 403 shows up as a failure here.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from chartlib import CHART, Helm, argocd_health

from rkt_devkit.aci import build_aci
from rkt_devkit.controlplane import ControlPlane, log_tail
from rkt_devkit.demo_nodes import SimNode
from rkt_devkit.kube import get_json, unique_name, wait_for

BIN = Path(sys.executable).parent
# The container image's PATH (helm/image/Dockerfile), with the virtualenv in /opt's place.
IMAGE_PATH = f"{BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Installed:
    release: str
    namespace: str
    service_account: str
    container: dict[str, Any]


@pytest.fixture
def installed(helm: Helm, control_plane: ControlPlane, namespace: str) -> Installed:
    release = unique_name("agent", max_length=20)
    helm(
        "install", release, str(CHART), "--namespace", namespace,
        "--kubeconfig", str(control_plane.kubeconfig), "--no-hooks",
    )  # fmt: skip
    fullname = f"{release}-rkt-operator"
    daemonset = get_json(control_plane.kubectl, "daemonset", fullname, namespace)
    assert daemonset is not None
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return Installed(release, namespace, pod["serviceAccountName"], container)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _downward(field: str, *, node: str, pod: str, namespace: str) -> str:
    values = {"spec.nodeName": node, "metadata.name": pod, "metadata.namespace": namespace}
    assert field in values, f"the DaemonSet uses a downward-API field the test cannot fill: {field}"
    return values[field]


class ServiceAccountDir:
    """The kubelet's projected ServiceAccount volume: ``token``, ``ca.crt`` and ``namespace``
    behind a ``..data`` symlink that a rotation swaps atomically."""

    def __init__(self, path: Path, control_plane: ControlPlane, namespace: str) -> None:
        self.path = path
        self.generation = 0
        path.mkdir()
        kubeconfig = yaml.safe_load(control_plane.kubeconfig.read_text())
        self.ca = base64.b64decode(
            kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]
        )
        self.namespace = namespace
        for name in ("token", "ca.crt", "namespace"):
            (path / name).symlink_to(Path("..data") / name)

    def project(self, token: str) -> None:
        self.generation += 1
        data = self.path / f"..{self.generation}"
        data.mkdir()
        (data / "token").write_text(token)
        (data / "ca.crt").write_bytes(self.ca)
        (data / "namespace").write_text(self.namespace)
        link = self.path / "..data_tmp"
        link.symlink_to(data.name)
        link.replace(self.path / "..data")


def agent_environment(
    installed: Installed, node: SimNode, sa_dir: ServiceAccountDir, server: str, pod_name: str
) -> dict[str, str]:
    """The container's env as the kubelet would resolve it, plus the test-local host paths."""
    env: dict[str, str] = {"PATH": IMAGE_PATH, "HOME": str(node.root), "LANG": "C.UTF-8"}
    for item in installed.container["env"]:
        if "valueFrom" not in item:
            # The API server drops an empty ``value``; the kubelet still sets the variable.
            env[item["name"]] = item.get("value", "")
        else:
            field = item["valueFrom"]["fieldRef"]["fieldPath"]
            env[item["name"]] = _downward(
                field, node=node.name, pod=pod_name, namespace=installed.namespace
            )
    # Test-local overrides, host resources only. In the cluster these are host paths mounted
    # at the same paths; here each is a temporary directory, and rkt is the simulator.
    env["RKT_OPERATOR_RKT_PATH"] = str(node.rkt_sim)
    env["RKT_OPERATOR_RKT_DIR"] = str(node.rkt_dir)
    env["RKT_OPERATOR_RKT_LOCAL_CONFIG"] = str(node.local_config)
    env["RKT_OPERATOR_TASK_ROOT"] = str(node.task_root)
    # The pod uses the host network; on this shared test host ports 8080 and 8081 may be
    # taken, so the liveness and metrics endpoints get free ports (same paths).
    env["RKT_OPERATOR_LIVENESS_ENDPOINT"] = f"http://127.0.0.1:{_free_port()}/healthz"
    env["RKT_OPERATOR_METRICS_ENDPOINT"] = f"http://127.0.0.1:{_free_port()}/metrics"
    # In a pod the kubelet sets the service variables and projects the ServiceAccount at
    # /var/run/secrets/kubernetes.io/serviceaccount; here the same files are elsewhere.
    address = urlsplit(server)
    env["KUBERNETES_SERVICE_HOST"] = str(address.hostname)
    env["KUBERNETES_SERVICE_PORT"] = str(address.port)
    env["RKT_OPERATOR_SERVICE_ACCOUNT_DIR"] = str(sa_dir.path)
    return env


@dataclass
class RunningAgent:
    node: SimNode
    popen: subprocess.Popen[bytes]
    sa_dir: ServiceAccountDir
    installed: Installed
    pod_name: str  # the Pod the current token is bound to


def pod_bound_token(
    control_plane: ControlPlane, installed: Installed, node: str, pod_name: str
) -> str:
    """The token the kubelet would mount: bound to the agent's Pod on ``node`` (so it carries
    the node name the chart's node-confinement policy checks). The Pod object is created
    with the ServiceAccount and node the DaemonSet would give it; no kubelet runs it."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": installed.namespace},
        "spec": {
            "nodeName": node,
            "serviceAccountName": installed.service_account,
            "automountServiceAccountToken": False,
            "containers": [{"name": "agent", "image": installed.container["image"]}],
        },
    }
    control_plane.apply(json.dumps(pod))
    done = control_plane.kubectl(
        "create", "token", installed.service_account, f"--namespace={installed.namespace}",
        "--bound-object-kind=Pod", f"--bound-object-name={pod_name}", "--duration=3600s",
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture
def running_agent(
    installed: Installed, control_plane: ControlPlane, tmp_path: Path
) -> Iterator[RunningAgent]:
    """The agent for a fresh Node, started from the installed DaemonSet's description."""
    node = SimNode(unique_name("node-rbac", max_length=30), tmp_path / "node", BIN)
    node.prepare()
    control_plane.apply(json.dumps({"apiVersion": "v1", "kind": "Node",
                                    "metadata": {"name": node.name}}))  # fmt: skip
    pod_name = f"{installed.release}-pod"
    token = pod_bound_token(control_plane, installed, node.name, pod_name)
    sa_dir = ServiceAccountDir(tmp_path / "serviceaccount", control_plane, installed.namespace)
    sa_dir.project(token)
    env = agent_environment(installed, node, sa_dir, control_plane.server, pod_name)
    argv = [*installed.container["command"], *installed.container.get("args", [])]
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable is not None, f"{argv[0]} is not on the image's PATH"
    with node.agent_log.open("ab") as log:
        popen = subprocess.Popen(
            [executable, *argv[1:]], stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, env=env, cwd=node.root, start_new_session=True,
        )  # fmt: skip
    try:
        yield RunningAgent(node, popen, sa_dir, installed, pod_name)
    finally:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
        node.remove_pods()
        control_plane.kubectl("delete", "node", node.name, "--wait=false", check=False)


@pytest.fixture
def agent(running_agent: RunningAgent) -> tuple[SimNode, subprocess.Popen[bytes]]:
    return running_agent.node, running_agent.popen


def _condition(task: dict[str, Any] | None, kind: str) -> str | None:
    for cond in ((task or {}).get("status") or {}).get("conditions", []):
        if cond["type"] == kind:
            return str(cond["status"])
    return None


def test_task_runs_to_ready_with_only_the_chart_rbac(
    agent: tuple[SimNode, subprocess.Popen[bytes]],
    installed: Installed,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    node, popen = agent
    image = build_aci(
        tmp_path / "sleeper.aci", name="example.com/sleeper", version="1.0",
        exec=["/bin/sleep", "3600"],
    )  # fmt: skip
    node.fetch(image)
    ns = installed.namespace
    task = {
        "apiVersion": "rktoperator.io/v1alpha1",
        "kind": "RktTask",
        "metadata": {"name": "sleeper", "namespace": ns},
        "spec": {
            "nodeName": node.name,
            "image": "example.com/sleeper:1.0",
            "insecureOptions": ["image"],
            "restartPolicy": "Always",
        },
    }
    control_plane.apply(json.dumps(task))

    def ready() -> dict[str, Any] | None:
        assert popen.poll() is None, f"the agent exited:\n{log_tail(node.agent_log)}"
        found = get_json(control_plane.kubectl, "rkttask", "sleeper", ns)
        return found if _condition(found, "Ready") == "True" else None

    try:
        running = wait_for(ready, timeout=180, interval=1.0, what="task Ready via chart RBAC")
        assert running["status"]["phase"] == "Running"
        assert running["status"]["uuid"]
        assert "rktoperator.io/finalizer" in running["metadata"]["finalizers"]
        # The shipped Argo CD health check agrees with the agent's status.
        assert argocd_health(running)[0] == "Healthy"

        # The node's rkt fingerprint was published as labels (nodes: get, patch).
        def labelled() -> bool:
            found = get_json(control_plane.kubectl, "node", node.name) or {}
            labels = found.get("metadata", {}).get("labels", {})
            return any(key.startswith("rktoperator.io/") for key in labels)

        wait_for(labelled, timeout=60, interval=1.0, what="fingerprint labels on the Node")

        # Events were posted by the agent's identity (core v1 events: create).
        events = control_plane.kubectl(
            "get", "events", "--namespace", ns, "-o", "json",
            "--field-selector=involvedObject.name=sleeper",
        )  # fmt: skip
        assert json.loads(events.stdout)["items"], "the agent posted no event"

        # A task whose app fails: Failed with its exit code, and Degraded for Argo CD.
        failing = json.loads(json.dumps(task))
        failing["metadata"]["name"] = "crasher"
        failing["spec"].update(command="/bin/sh", args=["-c", "exit 3"], restartPolicy="Never")
        control_plane.apply(json.dumps(failing))

        def failed() -> dict[str, Any] | None:
            found = get_json(control_plane.kubectl, "rkttask", "crasher", ns)
            return found if ((found or {}).get("status") or {}).get("phase") == "Failed" else None

        crashed = wait_for(failed, timeout=180, interval=1.0, what="task Failed")
        assert crashed["status"]["exitCode"] == 3
        assert argocd_health(crashed)[0] == "Degraded"

        # Deletion goes through the agent too: it stops the pod and drops its finalizer.
        control_plane.kubectl(
            "delete", "rkttask", "sleeper", "crasher", "--namespace", ns, "--wait=false"
        )
        wait_for(
            lambda: not control_plane.kubectl("get", "rkttask", "-n", ns, "-o", "name").stdout,
            timeout=120, interval=1.0, what="the finalizers removed by the agent",
        )  # fmt: skip
    except BaseException:
        sys.stderr.write(f"agent log:\n{log_tail(node.agent_log, 60)}\n")
        raise
    text = node.agent_log.read_text(errors="replace")
    assert "Forbidden" not in text, log_tail(node.agent_log, 60)
    assert " 403" not in text, log_tail(node.agent_log, 60)


def test_rotated_token_is_used_by_every_client_without_dns(
    running_agent: RunningAgent, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """The kubelet rotates the projected token; the old one is then refused. The agent goes on
    with the new one: kopf (after a 401 or within a minute) and the status client (before
    its next request). And nothing needs the service's DNS name."""
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("kubernetes.default.svc", 443)
    node, popen, installed = running_agent.node, running_agent.popen, running_agent.installed
    ns = installed.namespace
    image = build_aci(
        tmp_path / "sleeper.aci", name="example.com/sleeper", version="1.0",
        exec=["/bin/sleep", "3600"],
    )  # fmt: skip
    node.fetch(image)

    def task(name: str) -> str:
        return json.dumps({
            "apiVersion": "rktoperator.io/v1alpha1",
            "kind": "RktTask",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": node.name, "image": "example.com/sleeper:1.0",
                     "insecureOptions": ["image"]},
        })  # fmt: skip

    def ready(name: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            assert popen.poll() is None, f"the agent exited:\n{log_tail(node.agent_log)}"
            found = get_json(control_plane.kubectl, "rkttask", name, ns)
            return found if _condition(found, "Ready") == "True" else None

        return wait_for(check, timeout=180, interval=1.0, what=f"task {name} Ready")

    try:
        control_plane.apply(task("before"))
        ready("before")

        # Rotation as the kubelet does it: a token for the (new) Pod is projected, the old
        # Pod is gone, so the old token is refused from now on.
        old_token = (running_agent.sa_dir.path / "token").read_text()
        new_pod = f"{running_agent.pod_name}-2"
        running_agent.sa_dir.project(pod_bound_token(control_plane, installed, node.name, new_pod))
        control_plane.kubectl(
            "delete", "pod", running_agent.pod_name, f"--namespace={ns}",
            "--grace-period=0", "--force",
        )  # fmt: skip
        stale = control_plane.kubeconfig_for_token(old_token, tmp_path / "stale.kubeconfig")

        def old_token_refused() -> bool:  # the API server caches token reviews for a while
            done = control_plane.kubectl(
                "get", "rkttasks", f"--namespace={ns}", kubeconfig=stale, check=False
            )
            return done.returncode != 0 and "Unauthorized" in done.stderr

        wait_for(old_token_refused, timeout=60, interval=1.0, what="the old token refused")

        # A new task (kopf: finalizer and handled-state patches; the client: status) and the
        # deletion of the old one (kopf drops the finalizer) work with the new token.
        control_plane.apply(task("after"))
        after = ready("after")
        assert after["status"]["uuid"]
        control_plane.kubectl(
            "delete", "rkttask", "before", "after", "--namespace", ns, "--wait=false"
        )
        wait_for(
            lambda: not control_plane.kubectl("get", "rkttask", "-n", ns, "-o", "name").stdout,
            timeout=120, interval=1.0, what="the finalizers removed after the rotation",
        )  # fmt: skip
    except BaseException:
        sys.stderr.write(f"agent log:\n{log_tail(node.agent_log, 80)}\n")
        raise
    assert popen.poll() is None
    # kopf met the refused token and logged in again (through the agent's login handler).
    log = node.agent_log.read_text(errors="replace")
    assert log.count("Activity 'login' succeeded.") >= 2, log_tail(node.agent_log, 80)
