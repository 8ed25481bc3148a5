"""The binder (``rkt-operator schedule``) against the real API server, with Node objects made
directly (labels, taints, allocatable and Ready set through the status subresource):
selector and affinity, taints, capacity (the task that does not fit stays Pending with the
right message and binds when room is made), host ports, spread vs binpack, two replicas
(one leader, no double bind), a restart in the middle of a burst, and 200 tasks over 5
nodes without a capacity violation under concurrent applies."""

from __future__ import annotations

import json
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from binderlib import (
    BinderProcess,
    apply_all,
    delete_nodes,
    make_node,
    placement,
    requested_by_node,
    scheduled,
    set_node_status,
    tasks,
    unbound_task,
)
from rkt_devkit.kube import Kubectl, get_json, unique_name, wait_for

pytestmark = pytest.mark.k8s

WAIT = 120.0
MakeNode = Callable[..., str]
StartBinder = Callable[..., BinderProcess]


@pytest.fixture
def run(request: pytest.FixtureRequest) -> str:
    return unique_name(request.node.name[-20:], max_length=30)


@pytest.fixture
def node(kubectl: Kubectl, run: str) -> Iterator[MakeNode]:
    made: list[str] = []

    def create(suffix: str, **kw: Any) -> str:
        name = f"{run}-{suffix}"
        make_node(kubectl, name, run, **kw)
        made.append(name)
        return name

    yield create
    delete_nodes(kubectl, made)


@pytest.fixture
def start_binder(
    kubeconfig: Path, namespace: str, run: str, tmp_path: Path
) -> Iterator[StartBinder]:
    started: list[BinderProcess] = []

    def start(identity: str = "b1", *extra: str) -> BinderProcess:
        binder = BinderProcess(
            kubeconfig=kubeconfig,
            log_path=tmp_path / f"binder-{identity}.log",
            lease_namespace=namespace,
            lease_name=f"binder-{run}",
            identity=identity,
            extra=extra,
        )
        started.append(binder.start())
        return binder

    yield start
    for binder in started:
        binder.stop()


def _get(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    obj = get_json(kubectl, "rkttask", name, namespace)
    assert obj is not None
    return obj


def _wait_bound(kubectl: Kubectl, namespace: str, names: list[str]) -> dict[str, str]:
    def check() -> dict[str, str] | None:
        where = placement(kubectl, namespace)
        if all(where.get(n) for n in names):
            return {n: str(where[n]) for n in names}
        return None

    return wait_for(check, timeout=WAIT, interval=0.5, what=f"{names[:5]}... bound")


def _wait_unschedulable(kubectl: Kubectl, namespace: str, name: str, *parts: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = _get(kubectl, namespace, name)
        cond = scheduled(obj)
        if cond.get("status") == "False" and all(p in cond.get("message", "") for p in parts):
            return obj
        return None

    return wait_for(check, timeout=WAIT, interval=0.5, what=f"{name} unschedulable: {parts}")


def _events(kubectl: Kubectl, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    done = kubectl(
        "get", "events", f"--namespace={namespace}",
        f"--field-selector=involvedObject.name={name},reason={reason}", "-o", "json",
    )  # fmt: skip
    return list(json.loads(done.stdout).get("items") or [])


def test_selector_and_affinity_choose_the_matching_node(
    kubectl: Kubectl, namespace: str, run: str, node: MakeNode, start_binder: StartBinder
) -> None:
    a = node("a", labels={"zone": "a", "disk": "ssd", "cores": "4"})
    b = node("b", labels={"zone": "b", "disk": "ssd", "cores": "16"})
    c = node("c", labels={"zone": "c", "disk": "hdd", "cores": "32"})
    start_binder()
    required = {
        "nodeSelectorTerms": [
            {
                "matchExpressions": [
                    {"key": "disk", "operator": "In", "values": ["ssd"]},
                    {"key": "cores", "operator": "Gt", "values": ["8"]},
                ]
            }
        ]
    }
    by_selector = unbound_task("by-selector", run)
    by_selector["spec"]["nodeSelector"]["zone"] = "c"
    by_affinity = unbound_task(
        "by-affinity",
        run,
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}},
    )
    not_b = {"key": "zone", "operator": "NotIn", "values": ["b", "c"]}
    by_not_in = unbound_task(
        "by-not-in",
        run,
        affinity={
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [not_b]}]
                }
            }
        },
    )
    apply_all(kubectl, namespace, [by_selector, by_affinity, by_not_in])
    where = _wait_bound(kubectl, namespace, ["by-selector", "by-affinity", "by-not-in"])
    assert where == {"by-selector": c, "by-affinity": b, "by-not-in": a}
    obj = _get(kubectl, namespace, "by-affinity")
    cond = scheduled(obj)
    assert cond["status"] == "True"
    assert cond["reason"] == "Scheduled"
    assert f"bound to node {b}" in cond["message"]
    [event] = _events(kubectl, namespace, "by-affinity", "Scheduled")
    assert event["message"] == f"Successfully assigned {namespace}/by-affinity to {b}"
    # The -o wide / default columns show where the task went.
    table = kubectl("get", "rkt", "by-selector", f"--namespace={namespace}", "-o", "wide").stdout
    assert c in table


def test_taints_readiness_and_the_rkt_label_filter_then_changes_are_retried(
    kubectl: Kubectl, namespace: str, run: str, node: MakeNode, start_binder: StartBinder
) -> None:
    tainted = node("tainted", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    sick = node("sick", ready=False)
    node("no-rkt", rkt=False)
    node("evicting", taints=[{"key": "maintenance", "value": "", "effect": "NoExecute"}])
    start_binder()
    apply_all(kubectl, namespace, [unbound_task("picky", run)])
    # The taints are this test's own, so their counts are exact; Nodes left by other tiers
    # of the shared control plane may also be not ready or lack the label, so those reasons
    # are matched without their count.
    obj = _wait_unschedulable(
        kubectl,
        namespace,
        "picky",
        "1 node(s) had untolerated taint {dedicated: gpu}",
        "1 node(s) had untolerated taint {maintenance: }",
        " node(s) were not ready",
        " node(s) had no usable rkt agent (label rktoperator.io/rkt is not true)",
    )
    assert obj["status"]["phase"] == "Pending"
    conditions = {c["type"]: (c["status"], c["reason"]) for c in obj["status"]["conditions"]}
    assert conditions["Scheduled"] == ("False", "Unschedulable")
    assert conditions["Reconciling"] == ("True", "Unschedulable")  # kstatus: InProgress
    assert conditions["Ready"] == ("False", "Unschedulable")
    warnings = _events(kubectl, namespace, "picky", "FailedScheduling")
    assert warnings, "a FailedScheduling event is posted"
    assert "0/" in warnings[0]["message"]

    # The task changes: a toleration for the gpu taint makes the tainted node eligible.
    tolerations = obj["spec"]["tolerations"] + [
        {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
    ]
    kubectl(
        "patch", "rkttask", "picky", f"--namespace={namespace}", "--type=merge",
        "-p", json.dumps({"spec": {"tolerations": tolerations}}),
    )  # fmt: skip
    assert _wait_bound(kubectl, namespace, ["picky"]) == {"picky": tainted}

    # A node changes: the sick node becomes Ready and takes the next task.
    apply_all(kubectl, namespace, [unbound_task("second", run)])
    _wait_unschedulable(kubectl, namespace, "second", " node(s) were not ready")
    set_node_status(kubectl, sick, ready=True)
    assert _wait_bound(kubectl, namespace, ["second"]) == {"second": sick}
    assert scheduled(_get(kubectl, namespace, "second"))["status"] == "True"


def test_capacity_the_task_that_does_not_fit_waits_and_binds_when_room_is_made(
    kubectl: Kubectl, namespace: str, run: str, node: MakeNode, start_binder: StartBinder
) -> None:
    node("a", allocatable={"memory": "1Gi", "cpu": "4"})
    # A per-node capacity annotation takes precedence over status.allocatable.
    node(
        "b",
        allocatable={"memory": "64Gi", "cpu": "4"},
        annotations={"rktoperator.io/allocatable-memory": "1Gi"},
    )
    start_binder()
    limits = {"resources": {"limits": {"memory": "512Mi", "cpu": "250m"}}}
    first = [unbound_task(f"t{i}", run, **limits) for i in range(4)]
    apply_all(kubectl, namespace, first)
    where = _wait_bound(kubectl, namespace, [f"t{i}" for i in range(4)])
    assert sorted(Counter(where.values()).values()) == [2, 2]

    # Requests (not limits) are what is reserved when given.
    extra = unbound_task(
        "t4", run, resources={"limits": {"memory": "1Gi"}, "requests": {"memory": "256Mi"}}
    )
    apply_all(kubectl, namespace, [extra])
    obj = _wait_unschedulable(kubectl, namespace, "t4", "2 Insufficient memory")
    assert obj["spec"].get("nodeName") is None
    assert obj["status"]["phase"] == "Pending"

    victim = "t1"
    freed = where[victim]
    kubectl("delete", "rkttask", victim, f"--namespace={namespace}")
    assert _wait_bound(kubectl, namespace, ["t4"]) == {"t4": freed}
    items = tasks(kubectl, namespace)
    for used in requested_by_node(items, "memory").values():
        assert used <= Fraction(2**30)


def test_host_ports_are_not_bound_twice_on_one_node(
    kubectl: Kubectl, namespace: str, run: str, node: MakeNode, start_binder: StartBinder
) -> None:
    node("a")
    node("b")
    start_binder()
    port = {"ports": [{"name": "http", "hostPort": 18080}]}
    apply_all(kubectl, namespace, [unbound_task(f"web{i}", run, **port) for i in range(3)])
    where = _wait_bound(kubectl, namespace, ["web0", "web1"])
    assert where["web0"] != where["web1"]
    obj = _wait_unschedulable(
        kubectl, namespace, "web2", "2 node(s) didn't have free ports for the requested host ports"
    )
    assert obj["spec"].get("nodeName") is None
    # Another protocol on the same port number is no conflict.
    udp = {"ports": [{"name": "dns", "hostPort": 18080, "protocol": "UDP"}]}
    apply_all(kubectl, namespace, [unbound_task("dns", run, **udp)])
    _wait_bound(kubectl, namespace, ["dns"])


@pytest.mark.parametrize("strategy", ["spread", "binpack"])
def test_spread_and_binpack(
    kubectl: Kubectl,
    namespace: str,
    run: str,
    node: MakeNode,
    start_binder: StartBinder,
    strategy: str,
) -> None:
    names = [node(s, allocatable={"memory": "4Gi", "cpu": "4"}) for s in ("a", "b", "c")]
    limits = {"resources": {"limits": {"memory": "1Gi", "cpu": "500m"}}}
    apply_all(kubectl, namespace, [unbound_task(f"t{i}", run, **limits) for i in range(3)])
    start_binder("b1", f"--strategy={strategy}")
    where = _wait_bound(kubectl, namespace, ["t0", "t1", "t2"])
    if strategy == "spread":
        assert sorted(where.values()) == names
    else:  # all on one node: the first by name, as ties are broken by name
        assert set(where.values()) == {names[0]}


def _holder(kubectl: Kubectl, namespace: str, lease: str) -> str:
    obj = get_json(kubectl, "lease", lease, namespace) or {}
    return str((obj.get("spec") or {}).get("holderIdentity") or "")


def test_two_replicas_one_leader_no_double_bind_and_failover(
    kubectl: Kubectl, namespace: str, run: str, node: MakeNode, start_binder: StartBinder
) -> None:
    for s in ("a", "b", "c"):
        node(s, allocatable={"memory": "10Gi", "cpu": "10"})
    one = start_binder("b1")
    two = start_binder("b2")
    lease = f"binder-{run}"
    leader_name = wait_for(
        lambda: _holder(kubectl, namespace, lease), timeout=WAIT, what="a lease holder"
    )
    limits = {"resources": {"limits": {"memory": "1Gi", "cpu": "1"}}}
    burst = [unbound_task(f"t{i:02d}", run, **limits) for i in range(31)]
    apply_all(kubectl, namespace, burst)
    names = [f"t{i:02d}" for i in range(30)]
    where = _wait_bound(kubectl, namespace, names)
    assert Counter(where.values()).most_common(1)[0][1] <= 10
    _wait_unschedulable(kubectl, namespace, "t30", "3 Insufficient cpu", "3 Insufficient memory")

    leader, standby = (one, two) if leader_name == "b1" else (two, one)
    assert leader.bound_lines(), leader.log()
    assert standby.bound_lines() == [], standby.log()
    bound = [line.split("task=")[1].split()[0] for line in leader.bound_lines()]
    assert len(bound) == len(set(bound)) == 30

    # The leader dies without releasing the lease: the standby takes over and binds.
    leader.kill()
    kubectl("delete", "rkttask", "t00", f"--namespace={namespace}")
    assert _wait_bound(kubectl, namespace, ["t30"])["t30"] == where["t00"]
    assert _holder(kubectl, namespace, lease) == standby.identity
    assert any("t30" in line for line in standby.bound_lines())
    for name in [*names[1:], "t30"]:
        assert len(_events(kubectl, namespace, name, "Scheduled")) == 1, name


def test_binder_restarted_in_the_middle_of_a_burst(
    kubectl: Kubectl, namespace: str, run: str, node: MakeNode, start_binder: StartBinder
) -> None:
    names = [node(s, allocatable={"memory": "20Gi", "cpu": "4"}) for s in "abcde"]
    limits = {"resources": {"limits": {"memory": "1Gi", "cpu": "200m"}}}
    apply_all(kubectl, namespace, [unbound_task(f"t{i:03d}", run, **limits) for i in range(100)])
    binder = start_binder("b1")

    def some_bound() -> int:
        return sum(1 for n in placement(kubectl, namespace).values() if n)

    wait_for(some_bound, timeout=WAIT, interval=0.2, what="the first binds")
    binder.kill()
    partial = some_bound()
    binder.start()
    where = _wait_bound(kubectl, namespace, [f"t{i:03d}" for i in range(100)])
    assert set(where.values()) <= set(names)
    for used in requested_by_node(tasks(kubectl, namespace), "cpu").values():
        assert used <= 4
    assert Counter(where.values()).most_common(1)[0][1] == 20  # full, not over
    # No task was bound twice across both lives of the binder (a kill may fall between a
    # bind and its log line, so the log may miss one; it never repeats one).
    bound = [line.split("task=")[1].split()[0] for line in binder.bound_lines()]
    assert len(bound) == len(set(bound))
    assert partial >= 1


def test_200_tasks_over_5_nodes_under_concurrent_applies_never_exceed_capacity(
    kubectl: Kubectl, namespace: str, run: str, node: MakeNode, start_binder: StartBinder
) -> None:
    for s in "abcde":
        node(s, allocatable={"memory": "4Gi", "cpu": "4"})
    start_binder()
    limits = {"resources": {"limits": {"memory": "100Mi", "cpu": "100m"}}}
    batches = [[unbound_task(f"t{b}-{i:02d}", run, **limits) for i in range(53)] for b in range(4)]

    errors: list[BaseException] = []

    def apply_batch(batch: list[dict[str, Any]]) -> None:
        try:
            apply_all(kubectl, namespace, batch)
        except (subprocess.CalledProcessError, AssertionError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=apply_batch, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors

    def settled() -> list[dict[str, Any]] | None:
        items = tasks(kubectl, namespace)
        bound = [t for t in items if (t.get("spec") or {}).get("nodeName")]
        waiting = [t for t in items if not (t.get("spec") or {}).get("nodeName")]
        if len(bound) == 200 and all(scheduled(t).get("status") == "False" for t in waiting):
            return items
        return None

    items = wait_for(settled, timeout=WAIT * 2, interval=1.0, what="200 of 212 tasks bound")
    cpu = requested_by_node(items, "cpu")
    memory = requested_by_node(items, "memory")
    assert len(cpu) == 5
    for node_name in cpu:
        assert cpu[node_name] <= 4, node_name
        assert memory[node_name] <= 4 * 2**30, node_name
    waiting = [t for t in items if not (t.get("spec") or {}).get("nodeName")]
    assert len(waiting) == 12
    assert "5 Insufficient cpu" in scheduled(waiting[0])["message"]
