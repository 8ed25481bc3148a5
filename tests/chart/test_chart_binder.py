"""The chart's binder (templates/binder.yaml): off by default; when on, a Deployment running
``rkt-operator schedule`` unprivileged, with its own ServiceAccount, a ClusterRole holding
exactly what it needs and a Role for its Lease only; and, against the real API server, a
binder using only that ServiceAccount's token binds a task while being refused the rest."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chartlib import CHART, Helm, Render

from binderlib import BinderProcess, delete_nodes, make_node, placement, unbound_task
from rkt_devkit.controlplane import ControlPlane
from rkt_devkit.kube import unique_name, wait_for

ON = ("--set", "binder.enabled=true")


def _of(
    objects: list[dict[str, Any]], kind: str, component: str = "binder"
) -> list[dict[str, Any]]:
    return [
        o
        for o in objects
        if o["kind"] == kind
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]


def test_binder_is_off_by_default(render: Render) -> None:
    objects = render()
    assert not [o for o in objects if o["kind"] == "Deployment"]
    assert not _of(objects, "ClusterRole")


def test_binder_deployment_runs_schedule_unprivileged(render: Render) -> None:
    objects = render(*ON, "--set", "binder.strategy=binpack")
    [deployment] = _of(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["rkt-operator"]
    assert container["args"][0] == "schedule"
    assert "--strategy=binpack" in container["args"]
    assert "--lease-name=rkt-operator-binder" in container["args"]
    assert "--health-endpoint=http://0.0.0.0:8080/healthz" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    for key in ("hostPID", "hostNetwork", "volumes"):
        assert key not in pod
    # The agents' DaemonSet selector must not match the binder's pods.
    daemonset = next(o for o in objects if o["kind"] == "DaemonSet")
    selector = daemonset["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in selector.items())
    assert pod["serviceAccountName"] != daemonset["spec"]["template"]["spec"]["serviceAccountName"]


def test_binder_roles_are_least_privilege(render: Render) -> None:
    objects = render(*ON)
    [role] = _of(objects, "ClusterRole")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): r["verbs"] for r in role["rules"]}
    assert rules == {
        (("",), ("nodes",)): ["get", "list", "watch"],
        (("rktoperator.io",), ("rkttasks",)): ["get", "list", "watch", "patch"],
        (("rktoperator.io",), ("rkttasks/status",)): ["patch"],
        (("",), ("events",)): ["create"],
    }
    [lease_role] = _of(objects, "Role")
    assert lease_role["metadata"]["namespace"] == "rkt-system"
    assert lease_role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["rkt-operator-binder"],
            "verbs": ["get", "update"],
        },
    ]
    [binding] = _of(objects, "ClusterRoleBinding")
    [account] = _of(objects, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "rkt-system"}
    ]
    # The agents' role gains nothing from the binder.
    agent_role = _of(objects, "ClusterRole", "node-agent")
    assert agent_role == _of(render(), "ClusterRole", "node-agent")


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--set", "binder.strategy=random"], "/binder/strategy"),
        (["--set", "binder.replicas=0"], "/binder/replicas"),
        (["--set", "binder.leaseDurationSeconds=0"], "/binder/leaseDurationSeconds"),
        (["--set", "binder.typo=1"], "typo"),
    ],
)
def test_schema_rejects_bad_binder_values(helm: Helm, args: list[str], complaint: str) -> None:
    done = helm("template", "t", str(CHART), *args, check=False)
    assert done.returncode != 0
    assert complaint in done.stderr


@pytest.fixture
def installed(helm: Helm, control_plane: ControlPlane, namespace: str) -> Iterator[tuple[str, str]]:
    release = unique_name("bind", max_length=20)
    helm(
        "install", release, str(CHART), "--namespace", namespace, *ON,
        "--kubeconfig", str(control_plane.kubeconfig), "--no-hooks",
    )  # fmt: skip
    yield release, f"{release}-rkt-operator-binder"
    helm(
        "uninstall", release, "--namespace", namespace,
        "--kubeconfig", str(control_plane.kubeconfig), check=False,
    )  # fmt: skip


def test_binder_with_only_the_chart_rbac_binds_and_is_refused_the_rest(
    control_plane: ControlPlane, installed: tuple[str, str], namespace: str, tmp_path: Path
) -> None:
    _, account = installed
    token = control_plane.kubectl(
        "create", "token", account, f"--namespace={namespace}", "--duration=3600s"
    ).stdout.strip()
    kubeconfig = control_plane.kubeconfig_for_token(token, tmp_path / "binder.kubeconfig")

    for args in (
        ["delete", "rkttasks.rktoperator.io", "any", f"--namespace={namespace}"],
        ["get", "secrets", f"--namespace={namespace}"],
        ["create", "namespace", "not-allowed"],
        ["create", "token", account, f"--namespace={namespace}"],
        ["get", "leases", "someone-elses", f"--namespace={namespace}"],
    ):
        done = control_plane.kubectl(*args, kubeconfig=kubeconfig, check=False)
        assert done.returncode != 0, args
        assert "Forbidden" in done.stderr or "forbidden" in done.stderr, (args, done.stderr)

    run = unique_name("rbac", max_length=20)
    node = f"{run}-a"
    make_node(control_plane.kubectl, node, run)
    port = _free_port()
    binder = BinderProcess(
        kubeconfig=kubeconfig,
        log_path=tmp_path / "binder.log",
        lease_namespace=namespace,
        identity="chart-rbac",
        extra=[f"--health-endpoint=http://127.0.0.1:{port}/healthz"],
    ).start()
    try:
        control_plane.kubectl(
            "create", f"--namespace={namespace}", "-f", "-",
            input=json.dumps(unbound_task("placed", run)),
        )  # fmt: skip
        where = wait_for(
            lambda: placement(control_plane.kubectl, namespace).get("placed"),
            timeout=120,
            what="the task bound with the chart's RBAC only",
        )
        assert where == node, binder.log()
        # The liveness endpoint the chart probes answers while the loop runs.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            assert reply.status == 200
        # No RBAC denial of the binder's own requests (other tests' leftovers in terminating
        # namespaces may refuse events; that is the namespace, not RBAC).
        assert "is forbidden: User" not in binder.log()
    finally:
        binder.stop()
        delete_nodes(control_plane.kubectl, [node])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
