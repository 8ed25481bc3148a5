"""Node confinement against the real API server: the chart's ValidatingAdmissionPolicy lets an
agent write only the tasks (and the Node) of the node its token is bound to.

The chart is installed with helm. Two Node objects and a Pod of the agent's ServiceAccount on
node A are created (no kubelet is needed: the Pod is only the object the token is bound to,
as the kubelet's projected token is bound to the agent's pod). A TokenRequest bound to that
Pod carries node A in the user's extra ``authentication.kubernetes.io/node-name``; with it,
status, finalizer and annotation writes of a task on node B are refused by the policy, the
same writes of a task on node A are allowed, and so is labelling Node A but not Node B. A
token of the same ServiceAccount that is not bound to a Pod carries no node and may write
no task at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from chartlib import CHART, Helm
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from rkt_devkit.controlplane import ControlPlane
from rkt_devkit.kube import unique_name, wait_for

DENIED = "rkt-operator node confinement"
FINALIZER = "rktoperator.io/finalizer"
GROUP, VERSION, PLURAL = "rktoperator.io", "v1alpha1", "rkttasks"
MERGE = "application/merge-patch+json"


@dataclass
class Cluster:
    namespace: str
    service_account: str
    node_a: str
    node_b: str


@pytest.fixture
def cluster(helm: Helm, control_plane: ControlPlane, namespace: str) -> Iterator[Cluster]:
    release = unique_name("conf", max_length=20)
    helm(
        "install", release, str(CHART), "--namespace", namespace,
        "--kubeconfig", str(control_plane.kubeconfig), "--no-hooks",
    )  # fmt: skip
    account = f"{release}-rkt-operator"
    node_a, node_b = unique_name("node-a", max_length=30), unique_name("node-b", max_length=30)
    for node in (node_a, node_b):
        control_plane.apply(json.dumps({"apiVersion": "v1", "kind": "Node",
                                        "metadata": {"name": node}}))  # fmt: skip
    for node in (node_a, node_b):
        control_plane.apply(json.dumps(_task(f"task-{node}", node)), namespace=namespace)
    yield Cluster(namespace, account, node_a, node_b)
    # Nodes are cluster-wide: left behind, they would count in other tiers' scheduling.
    control_plane.kubectl("delete", "node", node_a, node_b, "--wait=false", check=False)


def _task(name: str, node: str) -> dict[str, object]:
    return {
        "apiVersion": "rktoperator.io/v1alpha1",
        "kind": "RktTask",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "image": "example.com/app:1.0"},
    }


def _agent_pod(control_plane: ControlPlane, cluster: Cluster, node: str) -> str:
    """A Pod of the agent's ServiceAccount bound to ``node`` (what the DaemonSet creates)."""
    name = unique_name("agent", max_length=30)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": cluster.namespace},
        "spec": {
            "nodeName": node,
            "serviceAccountName": cluster.service_account,
            "automountServiceAccountToken": False,
            "containers": [{"name": "agent", "image": "rkt-operator:test"}],
        },
    }
    control_plane.apply(json.dumps(pod))
    return name


@dataclass
class Outcome:
    ok: bool
    message: str


class AsAgent:
    """PATCH requests as the agent makes them (no GET first: RBAC grants none), with the
    official client and a bearer-token kubeconfig."""

    def __init__(self, control_plane: ControlPlane, token: str, path: Path) -> None:
        kubeconfig = control_plane.kubeconfig_for_token(token, path)
        self.api = kube_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    def _call(self, send: Callable[[], object]) -> Outcome:
        try:
            send()
        except ApiException as exc:
            message = json.loads(exc.body or "{}").get("message", str(exc))
            return Outcome(False, f"{exc.status} {message}")
        return Outcome(True, "")

    def patch_status(self, ns: str, name: str) -> Outcome:
        patch = {"status": {"phase": "Running", "uuid": "00000000-0000-0000-0000-000000000001"}}
        return self._call(lambda: self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, name, patch, _content_type=MERGE))  # fmt: skip

    def add_finalizer(self, ns: str, name: str) -> Outcome:
        patch = {"metadata": {"finalizers": [FINALIZER]}}
        return self._call(lambda: self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name, patch, _content_type=MERGE))  # fmt: skip

    def annotate(self, ns: str, name: str) -> Outcome:
        patch = {"metadata": {"annotations": {"rktoperator.io/last-handled-configuration": "{}"}}}
        return self._call(lambda: self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name, patch, _content_type=MERGE))  # fmt: skip

    def bind(self, ns: str, name: str, node: str) -> Outcome:
        patch = {"spec": {"nodeName": node}}
        return self._call(lambda: self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name, patch, _content_type=MERGE))  # fmt: skip

    def label_node(self, node: str) -> Outcome:
        patch = {"metadata": {"labels": {"rktoperator.io/rkt": "true"}}}
        return self._call(lambda: self.core.patch_node(node, patch, _content_type=MERGE))


def _pod_bound_token(control_plane: ControlPlane, cluster: Cluster, pod: str) -> str:
    done = control_plane.kubectl(
        "create", "token", cluster.service_account, f"--namespace={cluster.namespace}",
        "--bound-object-kind=Pod", f"--bound-object-name={pod}", "--duration=3600s",
    )  # fmt: skip
    return done.stdout.strip()


def _refused(done: Outcome) -> bool:
    return not done.ok and done.message.startswith("403") and DENIED in done.message


def test_agent_token_of_node_a_writes_only_node_a_tasks(
    cluster: Cluster, control_plane: ControlPlane, tmp_path: Path
) -> None:
    ns = cluster.namespace
    pod = _agent_pod(control_plane, cluster, cluster.node_a)
    agent = AsAgent(control_plane, _pod_bound_token(control_plane, cluster, pod),
                    tmp_path / "a.kubeconfig")  # fmt: skip
    other, own = f"task-{cluster.node_b}", f"task-{cluster.node_a}"

    # The API server loads a new policy asynchronously: wait until it refuses the first write.
    wait_for(
        lambda: _refused(agent.patch_status(ns, other)), timeout=60, interval=1.0,
        what="the node-confinement policy to refuse a status write of node B's task",
    )  # fmt: skip
    refused = agent.patch_status(ns, other)
    assert f"the agent of node {cluster.node_a} may only update tasks" in refused.message
    assert f"bound to {cluster.node_b}" in refused.message
    assert _refused(agent.add_finalizer(ns, other))
    assert _refused(agent.annotate(ns, other))

    # Its own node's task: status, finalizer and kopf's annotations go through.
    for write in (agent.patch_status, agent.add_finalizer, agent.annotate):
        done = write(ns, own)
        assert done.ok, done.message

    # Nothing of node B's task changed; node A's task has what its agent wrote.
    tasks = {}
    for name in (own, other):
        done = control_plane.kubectl("get", "rkttask", name, "-n", ns, "-o", "json")
        tasks[name] = json.loads(done.stdout)
    assert tasks[own]["status"]["phase"] == "Running"
    assert FINALIZER in tasks[own]["metadata"]["finalizers"]
    assert "phase" not in (tasks[other].get("status") or {})
    assert FINALIZER not in (tasks[other]["metadata"].get("finalizers") or [])

    # The agent labels its own Node only.
    own_node = agent.label_node(cluster.node_a)
    assert own_node.ok, own_node.message
    other_node = agent.label_node(cluster.node_b)
    assert _refused(other_node), other_node.message
    assert "may only label its own Node" in other_node.message


def test_a_token_not_bound_to_a_pod_on_a_node_writes_no_task(
    cluster: Cluster, control_plane: ControlPlane, tmp_path: Path
) -> None:
    ns = cluster.namespace
    token = control_plane.create_token(ns, cluster.service_account)
    agent = AsAgent(control_plane, token, tmp_path / "unbound.kubeconfig")
    own = f"task-{cluster.node_a}"
    wait_for(lambda: _refused(agent.patch_status(ns, own)), timeout=60, interval=1.0,
             what="the node-confinement policy to refuse an unbound token")  # fmt: skip
    done = agent.add_finalizer(ns, own)
    assert _refused(done)
    assert "not bound to a Pod on a node" in done.message


def test_other_users_are_left_to_rbac(
    cluster: Cluster, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """The admin (or a binder, a GitOps tool) is not the agent: the policy does not apply."""
    patch = json.dumps({"status": {"phase": "Running"}})
    control_plane.kubectl(
        "patch", "rkttask", f"task-{cluster.node_b}", f"--namespace={cluster.namespace}",
        "--subresource=status", "--type=merge", "-p", patch,
    )  # fmt: skip


def test_an_agent_cannot_bind_a_task_not_even_to_its_own_node(
    cluster: Cluster, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """Binding is the binder's job: RBAC lets the agent patch tasks (for its finalizer), the
    policy refuses it any write to a task that is not already bound to its node."""
    unbound = {
        "apiVersion": "rktoperator.io/v1alpha1",
        "kind": "RktTask",
        "metadata": {"name": "unbound"},
        "spec": {"image": "example.com/app:1.0"},
    }
    control_plane.apply(json.dumps(unbound), namespace=cluster.namespace)
    pod = _agent_pod(control_plane, cluster, cluster.node_a)
    agent = AsAgent(
        control_plane, _pod_bound_token(control_plane, cluster, pod), tmp_path / "kubeconfig"
    )
    # The policy is new with this release: wait until the API server enforces it (a write
    # to the other node's task is refused) before the bind, which must be refused at once.
    other = f"task-{cluster.node_b}"
    wait_for(lambda: _refused(agent.patch_status(cluster.namespace, other)), timeout=60,
             interval=1.0, what="the node-confinement policy in force")  # fmt: skip
    done = agent.bind(cluster.namespace, "unbound", cluster.node_a)
    assert _refused(done), done.message
    task = json.loads(
        control_plane.kubectl(
            "get", "rkttask", "unbound", f"--namespace={cluster.namespace}", "-o", "json"
        ).stdout
    )
    assert "nodeName" not in task["spec"]
    # Nor move a task bound to its node elsewhere (the CRD refuses that for everyone).
    moved = agent.bind(cluster.namespace, f"task-{cluster.node_a}", cluster.node_b)
    assert not moved.ok
