"""``kubectl rkt`` against the real API server, with users holding the chart's plugin roles
(or less): every refusal names the verb and resource that is missing and the role to ask for,
and the other failures (no such task, not bound, no agent on the node) read like kubectl's.

The plugin is run the way users run it: ``kubectl rkt ...``, kubectl finding the installed
``kubectl-rkt`` on PATH. There is no kubelet here, so the agent pod is an object whose status
says Running; the steps that succeed against a real node are in tests/node/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import Render

from rkt_devkit.controlplane import ControlPlane
from rkt_devkit.kube import unique_name

pytestmark = pytest.mark.k8s

BIN = Path(sys.executable).parent
NODE = "rkt-node-1"

Run = Callable[..., subprocess.CompletedProcess[str]]


def _plugin_objects(render: Render, agent_ns: str, *args: str) -> list[dict[str, Any]]:
    objects = render(*args, release="rkt-operator", namespace=agent_ns)
    return [
        o
        for o in objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "kubectl-plugin"
    ]


def _task(name: str, node: str | None) -> str:
    spec: dict[str, Any] = {"image": "example.com/app:1.0"}
    if node:
        spec["nodeName"] = node
    return yaml.safe_dump(
        {"apiVersion": "rktoperator.io/v1alpha1", "kind": "RktTask",
         "metadata": {"name": name}, "spec": spec}
    )  # fmt: skip


def _agent_pod(name: str, node: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "rkt-operator"}},
            "spec": {"nodeName": node, "containers": [{"name": "agent", "image": "agent:test"}]},
        }
    )


class Cluster:
    """The task namespace, the agent namespace and users with chosen grants."""

    def __init__(self, plane: ControlPlane, tasks_ns: str, agent_ns: str, tmp: Path) -> None:
        self.plane, self.tasks_ns, self.agent_ns, self.tmp = plane, tasks_ns, agent_ns, tmp

    def user(self, name: str, *, task_role: str | None, agent_role: str | None) -> Path:
        """A ServiceAccount bound to ``task_role`` (a ClusterRole) in the task namespace and
        ``agent_role`` (a Role) in the agent namespace; its kubeconfig."""
        kubectl = self.plane.kubectl
        kubectl("create", "serviceaccount", name, f"--namespace={self.tasks_ns}")
        subject = f"--serviceaccount={self.tasks_ns}:{name}"
        if task_role:
            kubectl("create", "rolebinding", f"{name}-tasks", f"--clusterrole={task_role}",
                    subject, f"--namespace={self.tasks_ns}")  # fmt: skip
        if agent_role:
            kubectl("create", "rolebinding", f"{name}-agent", f"--role={agent_role}",
                    subject, f"--namespace={self.agent_ns}")  # fmt: skip
        token = self.plane.create_token(self.tasks_ns, name)
        return self.plane.kubeconfig_for_token(token, self.tmp / f"{name}.kubeconfig")

    def rkt(self, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """``kubectl rkt ARGS`` as a user runs it (kubectl finds kubectl-rkt on PATH)."""
        kubectl_dir = self.plane.binary("kubectl").parent
        env = {
            **os.environ,
            "PATH": f"{kubectl_dir}:{BIN}:/usr/bin:/bin",
            "KUBECACHEDIR": str(self.tmp / "kubectl-cache"),  # not the user's ~/.kube/cache
        }
        argv = [
            "kubectl", "rkt", f"--kubeconfig={kubeconfig}", f"--namespace={self.tasks_ns}",
            f"--agent-namespace={self.agent_ns}", *args,
        ]  # fmt: skip
        return subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=120, check=False
        )


@pytest.fixture
def cluster(control_plane: ControlPlane, render: Render, namespace: str, tmp_path: Path) -> Cluster:
    agent_ns = unique_name("rkt-agents", max_length=40)
    control_plane.kubectl("create", "namespace", agent_ns)
    for obj in _plugin_objects(render, agent_ns):
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(obj))
    # A Role like the chart's agent-exec but without pods/exec: may find the agent, not enter.
    control_plane.kubectl(
        "create", "role", "find-agents-only", "--verb=get,list", "--resource=pods",
        f"--namespace={agent_ns}",
    )  # fmt: skip
    control_plane.kubectl("apply", f"--namespace={namespace}", "-f", "-", input=_task("web", NODE))
    control_plane.kubectl(
        "apply", f"--namespace={namespace}", "-f", "-", input=_task("unbound", None)
    )
    control_plane.kubectl(
        "apply", f"--namespace={namespace}", "-f", "-", input=_task("elsewhere", "no-agent-node")
    )
    control_plane.kubectl("apply", f"--namespace={agent_ns}", "-f", "-",
                          input=_agent_pod("agent-1", NODE))  # fmt: skip
    control_plane.kubectl(
        "patch", "pod", "agent-1", f"--namespace={agent_ns}", "--subresource=status",
        "--type=merge", "--patch", json.dumps({"status": {"phase": "Running"}}),
    )  # fmt: skip
    return Cluster(control_plane, namespace, agent_ns, tmp_path)


def test_the_chart_ships_the_plugins_roles(render: Render) -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in _plugin_objects(render, "ops")}
    assert set(objects) == {
        ("ClusterRole", "rkt-operator-task-viewer"),
        ("ClusterRole", "rkt-operator-task-operator"),
        ("Role", "rkt-operator-agent-exec"),
    }

    def grants(obj: dict[str, Any]) -> set[tuple[str, str, str]]:
        return {
            (g, r, v)
            for rule in obj["rules"]
            for g in rule["apiGroups"]
            for r in rule["resources"]
            for v in rule["verbs"]
        }

    viewer = grants(objects["ClusterRole", "rkt-operator-task-viewer"])
    operator = grants(objects["ClusterRole", "rkt-operator-task-operator"])
    agent_exec = objects["Role", "rkt-operator-agent-exec"]
    assert ("rktoperator.io", "rkttasks", "get") in viewer
    assert operator - viewer == {
        ("rktoperator.io", "rkttasks/exec", "create"),
        ("rktoperator.io", "rkttasks/signal", "create"),
    }
    assert agent_exec["metadata"]["namespace"] == "ops"
    assert grants(agent_exec) == {("", "pods", "get"), ("", "pods", "list"),
                                  ("", "pods/exec", "create")}  # fmt: skip
    labels = objects["ClusterRole", "rkt-operator-task-viewer"]["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert not _plugin_objects(render, "ops", "--set=rbac.pluginRoles=false")
    assert not _plugin_objects(render, "ops", "--set=rbac.create=false")


def test_kubectl_finds_the_installed_plugin(control_plane: ControlPlane) -> None:
    kubectl_dir = control_plane.binary("kubectl").parent
    done = subprocess.run(
        [str(kubectl_dir / "kubectl"), "plugin", "list"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PATH": f"{kubectl_dir}:{BIN}:/usr/bin:/bin"},
    )  # fmt: skip
    assert str(BIN / "kubectl-rkt") in done.stdout, done.stdout + done.stderr


def test_a_role_without_pods_exec_is_refused_naming_what_is_missing(cluster: Cluster) -> None:
    config = cluster.user(
        "dana", task_role="rkt-operator-task-viewer", agent_role="find-agents-only"
    )
    for args in (["logs", "web", "-f"], ["stats", "web"], ["describe", "web"]):
        done = cluster.rkt(config, *args)
        assert done.returncode == 1, done
        assert done.stderr == (
            f'error: forbidden: kubectl rkt {args[0]} needs "create pods/exec" in namespace '
            f'"{cluster.agent_ns}", which you lack; an administrator can grant it with a '
            f'RoleBinding to the Role rkt-operator-agent-exec in namespace "{cluster.agent_ns}" '
            "(the agents' namespace)\n"
        )
        assert done.stdout == ""


def test_no_access_to_the_agents_namespace(cluster: Cluster) -> None:
    config = cluster.user("erin", task_role="rkt-operator-task-viewer", agent_role=None)
    done = cluster.rkt(config, "logs", "web")
    assert done.returncode == 1
    assert f'needs "list pods" in namespace "{cluster.agent_ns}"' in done.stderr
    assert "Role rkt-operator-agent-exec" in done.stderr


def test_no_access_to_the_task(cluster: Cluster) -> None:
    config = cluster.user("frank", task_role=None, agent_role="rkt-operator-agent-exec")
    done = cluster.rkt(config, "logs", "web")
    assert done.returncode == 1
    assert done.stderr == (
        'error: forbidden: kubectl rkt logs needs "get rkttasks.rktoperator.io" in namespace '
        f'"{cluster.tasks_ns}", which you lack; an administrator can grant it with a '
        "RoleBinding to the ClusterRole rkt-operator-task-viewer in namespace "
        f'"{cluster.tasks_ns}"\n'
    )


def test_a_viewer_may_not_exec_or_signal(cluster: Cluster) -> None:
    config = cluster.user(
        "gail", task_role="rkt-operator-task-viewer", agent_role="rkt-operator-agent-exec"
    )
    for args in (["exec", "web", "--", "true"], ["signal", "web", "HUP"]):
        done = cluster.rkt(config, *args)
        assert done.returncode == 1
        assert (
            f'kubectl rkt {args[0]} needs "create rkttasks.rktoperator.io/{args[0]}" in '
            f'namespace "{cluster.tasks_ns}"'
        ) in done.stderr
        assert "ClusterRole rkt-operator-task-operator" in done.stderr


def test_missing_unbound_and_agentless_tasks(cluster: Cluster) -> None:
    config = cluster.user(
        "hank", task_role="rkt-operator-task-operator", agent_role="rkt-operator-agent-exec"
    )
    done = cluster.rkt(config, "logs", "nope")
    assert (done.returncode, done.stderr) == (
        1,
        f'error: rkttask "nope" not found in namespace "{cluster.tasks_ns}"\n',
    )
    done = cluster.rkt(config, "stats", "unbound")
    assert done.returncode == 1
    assert (
        f'error: rkttask "unbound" in namespace "{cluster.tasks_ns}" is not bound to a node yet'
    ) in done.stderr
    done = cluster.rkt(config, "exec", "elsewhere", "--", "true")
    assert done.returncode == 1
    assert 'error: no rkt-operator agent on node "no-agent-node"' in done.stderr
    done = cluster.rkt(config, "logs", "web", "--tail=-3")
    assert (done.returncode, done.stderr) == (2, "error: --tail must not be negative: -3\n")
