"""Helpers for the binder tests and benchmark: Node objects made directly (no kubelet: the
status subresource carries Ready and allocatable), the binder as a real subprocess
(``rkt-operator schedule``), unbound task manifests and reads of where tasks went.

Every test isolates itself in a cluster shared with other tests: its nodes carry a taint
``test.rktoperator.io/run=<id>:NoSchedule`` and a label ``test.rktoperator.io/run=<id>``, and
its tasks tolerate the one and select the other, so no foreign task lands on its nodes and
none of its tasks lands on a foreign node.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from proclib import ChildProcess
from rkt_devkit.kube import Kubectl
from rkt_operator.model.quantity import parse_quantity

BIN = Path(sys.executable).parent
RUN_KEY = "test.rktoperator.io/run"
NOT_READY = "node.kubernetes.io/not-ready"


def isolation(run: str) -> dict[str, Any]:
    """The spec fields that keep a test's tasks on that test's nodes."""
    return {
        "nodeSelector": {RUN_KEY: run},
        "tolerations": [
            {"key": RUN_KEY, "operator": "Equal", "value": run, "effect": "NoSchedule"}
        ],
    }


def make_node(
    kubectl: Kubectl,
    name: str,
    run: str,
    *,
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, str]] = (),
    allocatable: Mapping[str, str] | None = None,
    ready: bool = True,
    rkt: bool = True,
    annotations: Mapping[str, str] | None = None,
) -> None:
    """Create Node ``name`` and set its status (Ready condition, allocatable)."""
    all_labels = {RUN_KEY: run, **(labels or {})}
    if rkt:
        all_labels["rktoperator.io/rkt"] = "true"
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels, "annotations": dict(annotations or {})},
        "spec": {
            "taints": [
                {"key": RUN_KEY, "value": run, "effect": "NoSchedule"},
                *[dict(t) for t in taints],
            ]
        },
    }
    kubectl("create", "-f", "-", input=json.dumps(body))
    set_node_status(kubectl, name, ready=ready, allocatable=allocatable)


def set_node_status(
    kubectl: Kubectl, name: str, *, ready: bool, allocatable: Mapping[str, str] | None = None
) -> None:
    status: dict[str, Any] = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "message": "set by the test",
            }
        ]
    }
    if allocatable is not None:
        status["allocatable"] = dict(allocatable)
        status["capacity"] = dict(allocatable)
    kubectl(
        "patch", "node", name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    # The API server's TaintNodesByCondition admission taints every new Node not-ready; with
    # no node lifecycle controller here, do its part: the taint follows the Ready condition.
    node = json.loads(kubectl("get", "node", name, "-o", "json").stdout)
    taints = [t for t in node["spec"].get("taints") or [] if t["key"] != NOT_READY]
    if not ready:
        taints.append({"key": NOT_READY, "effect": "NoSchedule"})
    kubectl("patch", "node", name, "--type=merge", "-p", json.dumps({"spec": {"taints": taints}}))


def delete_nodes(kubectl: Kubectl, names: Sequence[str]) -> None:
    if names:
        kubectl("delete", "node", *names, "--wait=false", "--ignore-not-found", check=False)


def unbound_task(name: str, run: str, **spec: Any) -> dict[str, Any]:
    """An RktTask without nodeName, isolated to the test's nodes."""
    body = {"image": "example.com/app:1.0", **isolation(run), **spec}
    return {
        "apiVersion": "rktoperator.io/v1alpha1",
        "kind": "RktTask",
        "metadata": {"name": name},
        "spec": body,
    }


def apply_all(kubectl: Kubectl, namespace: str, manifests: Sequence[Mapping[str, Any]]) -> None:
    """One ``kubectl create`` for many objects."""
    body = {"apiVersion": "v1", "kind": "List", "items": list(manifests)}
    kubectl("create", f"--namespace={namespace}", "-f", "-", input=json.dumps(body))


def tasks(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    done = kubectl("get", "rkttasks", f"--namespace={namespace}", "-o", "json")
    return list(json.loads(done.stdout).get("items") or [])


def placement(kubectl: Kubectl, namespace: str) -> dict[str, str | None]:
    """task name -> node name (None while unbound)."""
    return {
        t["metadata"]["name"]: (t.get("spec") or {}).get("nodeName")
        for t in tasks(kubectl, namespace)
    }


def scheduled(task: Mapping[str, Any]) -> dict[str, Any]:
    for cond in (task.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Scheduled":
            return dict(cond)
    return {}


def requested_by_node(items: Sequence[Mapping[str, Any]], resource: str) -> dict[str, Fraction]:
    """Sum of the requests (limits standing in) of bound tasks, per node."""
    defaults = {"memory": "300M", "cpu": "100m"}
    used: Counter[str] = Counter()
    sums: dict[str, Fraction] = {}
    for item in items:
        spec = item.get("spec") or {}
        node = spec.get("nodeName")
        if not node:
            continue
        resources = spec.get("resources") or {}
        value = (
            (resources.get("requests") or {}).get(resource)
            or (resources.get("limits") or {}).get(resource)
            or defaults[resource]
        )
        sums[node] = sums.get(node, Fraction(0)) + parse_quantity(value)
        used[node] += 1
    return sums


@dataclass
class BinderProcess(ChildProcess):
    """``rkt-operator schedule`` as a subprocess with short lease timings."""

    kubeconfig: Path
    log_path: Path
    lease_namespace: str
    identity: str
    lease_name: str = "rkt-operator-binder"
    extra: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    def argv(self) -> list[str]:
        return [
            str(BIN / "rkt-operator"), "schedule",
            f"--kubeconfig={self.kubeconfig}",
            f"--lease-namespace={self.lease_namespace}",
            f"--lease-name={self.lease_name}",
            f"--identity={self.identity}",
            "--lease-duration-seconds=4",
            "--renew-deadline-seconds=3",
            "--retry-period-seconds=0.5",
            "--resync-seconds=5",
            *self.extra,
        ]  # fmt: skip

    def start(self) -> BinderProcess:
        env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(self.log_path.parent)}
        self._spawn(self.argv(), env, self.log_path, "binder")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def bound_lines(self) -> list[str]:
        return [line for line in self.log().splitlines() if " bound node=" in line]
