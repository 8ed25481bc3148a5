"""The binder's decision, a pure function: filters with kube-scheduler-style reasons, scoring
(spread, binpack, preferred affinity, PreferNoSchedule), deterministic ties, capacity."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from rkt_operator.binder import decide as d
from rkt_operator.model.spec import RktTaskSpec

GI = 2**30


def spec(**fields: Any) -> RktTaskSpec:
    return RktTaskSpec.model_validate({"image": "example.com/app:1.0", **fields})


def node(name: str, **kw: Any) -> d.NodeView:
    labels = {d.LABEL_RKT: "true", **kw.pop("labels", {})}
    return d.NodeView(name=name, labels=labels, **kw)


def sized(name: str, memory: str = "4Gi", cpu: str = "4", **kw: Any) -> d.NodeView:
    return node(
        name,
        allocatable={
            "memory": Fraction(4 * GI if memory == "4Gi" else int(memory)),
            "cpu": Fraction(cpu),
        },
        **kw,
    )


def node_object(name: str, **kw: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": kw.get("labels", {}),
            "annotations": kw.get("annotations", {}),
        },
        "spec": {"taints": kw.get("taints", []), "unschedulable": kw.get("unschedulable", False)},
        "status": {
            "conditions": [{"type": "Ready", "status": kw.get("ready", "True")}],
            "allocatable": kw.get("allocatable", {}),
        },
    }


def test_node_view_reads_ready_taints_and_allocatable() -> None:
    view = d.node_view(
        node_object(
            "n1",
            labels={"zone": "a"},
            taints=[{"key": "dedicated", "value": "rkt", "effect": "NoSchedule"}],
            allocatable={"memory": "8Gi", "cpu": "3800m", "pods": "110"},
        )
    )
    assert view.name == "n1"
    assert view.ready
    assert view.labels == {"zone": "a"}
    assert view.taints == (d.Taint("dedicated", "rkt", "NoSchedule"),)
    assert view.allocatable == {"memory": Fraction(8 * GI), "cpu": Fraction(38, 10)}
    assert not d.node_view(node_object("n2", ready="False")).ready
    assert not d.node_view({"metadata": {"name": "n3"}}).ready  # no conditions at all


def test_capacity_annotations_take_precedence_and_bad_values_are_ignored() -> None:
    view = d.node_view(
        node_object(
            "n1",
            annotations={d.ANNOTATION_MEMORY: "1Gi", d.ANNOTATION_CPU: "not-a-quantity"},
            allocatable={"memory": "8Gi", "cpu": "2"},
        )
    )
    assert view.allocatable == {"memory": Fraction(GI), "cpu": Fraction(2)}


def test_requests_default_to_limits_then_to_rkt_defaults() -> None:
    assert d.demand_of(spec()) == d.Demand(Fraction(300 * 10**6), Fraction(1, 10))
    limited = spec(resources={"limits": {"memory": "1Gi", "cpu": "2"}})
    assert d.demand_of(limited) == d.Demand(Fraction(GI), Fraction(2))
    requested = spec(resources={"limits": {"memory": "1Gi"}, "requests": {"memory": "256Mi"}})
    assert d.demand_of(requested).memory == Fraction(256 * 2**20)
    ports = spec(ports=[{"name": "http", "hostPort": 8080}, {"name": "m"}])
    assert d.demand_of(ports).host_ports == frozenset({("TCP", 8080, "")})


def test_every_filter_reports_its_reason_in_kube_scheduler_form() -> None:
    task = spec(nodeSelector={"disk": "ssd"}, resources={"limits": {"memory": "3Gi"}})
    nodes = [
        node("a-not-ready", ready=False),
        node("b-cordoned", unschedulable=True, labels={"disk": "ssd"}),
        d.NodeView("c-no-agent", labels={"disk": "ssd"}),
        node("d-hdd", labels={"disk": "hdd"}),
        node(
            "e-tainted", labels={"disk": "ssd"}, taints=(d.Taint("dedicated", "gpu", "NoSchedule"),)
        ),
        sized("f-small", memory=str(2 * GI), labels={"disk": "ssd"}),
        sized("g-small", memory=str(2 * GI), labels={"disk": "ssd"}),
    ]
    choice = d.choose(task, nodes, {})
    assert choice.node is None
    assert choice.message == (
        "0/7 nodes are available: 2 Insufficient memory, "
        f"1 node(s) didn't match the task's node selector or affinity, "
        f"1 node(s) had no usable rkt agent (label {d.LABEL_RKT} is not true), "
        "1 node(s) had untolerated taint {dedicated: gpu}, "
        "1 node(s) were not ready, 1 node(s) were unschedulable."
    )


def test_no_nodes_at_all() -> None:
    assert d.choose(spec(), [], {}).message == "0/0 nodes are available: no Node objects exist."


@pytest.mark.parametrize(
    ("expression", "matching"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "b"]}, {"n-a", "n-b"}),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, {"n-b", "n-none"}),
        ({"key": "zone", "operator": "Exists"}, {"n-a", "n-b"}),
        ({"key": "zone", "operator": "DoesNotExist"}, {"n-none"}),
        ({"key": "cores", "operator": "Gt", "values": ["4"]}, {"n-b"}),
        ({"key": "cores", "operator": "Lt", "values": ["8"]}, {"n-a"}),
    ],
)
def test_required_affinity_operators(expression: dict[str, Any], matching: set[str]) -> None:
    nodes = [
        node("n-a", labels={"zone": "a", "cores": "4"}),
        node("n-b", labels={"zone": "b", "cores": "16"}),
        node("n-none", labels={"cores": "lots"}),  # Gt/Lt on a non-integer never match
    ]
    required = {"nodeSelectorTerms": [{"matchExpressions": [expression]}]}
    task = spec(
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    )
    assert set(d.choose(task, nodes, {}).ranking) == matching


def test_terms_are_ored_expressions_anded_and_match_fields_name_nodes() -> None:
    nodes = [node("n1", labels={"zone": "a"}), node("n2", labels={"zone": "b"}), node("n3")]
    required = {
        "nodeSelectorTerms": [
            {
                "matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a"]},
                    {"key": "zone", "operator": "Exists"},
                ]
            },
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n3"]}]},
        ]
    }
    task = spec(
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    )
    assert set(d.choose(task, nodes, {}).ranking) == {"n1", "n3"}


def test_node_selector_needs_every_label() -> None:
    nodes = [node("n1", labels={"a": "1"}), node("n2", labels={"a": "1", "b": "2"})]
    assert d.choose(spec(nodeSelector={"a": "1", "b": "2"}), nodes, {}).ranking == ("n2",)


@pytest.mark.parametrize(
    ("toleration", "tolerated"),
    [
        ({"key": "dedicated", "operator": "Equal", "value": "rkt", "effect": "NoSchedule"}, True),
        ({"key": "dedicated", "operator": "Equal", "value": "other"}, False),
        ({"key": "dedicated", "operator": "Exists"}, True),
        ({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"operator": "Exists"}, True),
    ],
)
def test_tolerations(toleration: dict[str, Any], tolerated: bool) -> None:
    tainted = node("n1", taints=(d.Taint("dedicated", "rkt", "NoSchedule"),))
    choice = d.choose(spec(tolerations=[toleration]), [tainted], {})
    assert (choice.node == "n1") is tolerated


def test_no_execute_taints_filter_and_prefer_no_schedule_only_scores() -> None:
    nodes = [
        node("a", taints=(d.Taint("t", "", "PreferNoSchedule"),)),
        node("b"),
        node("c", taints=(d.Taint("gone", "", "NoExecute"),)),
    ]
    assert d.choose(spec(), nodes, {}).ranking == ("b", "a")


def test_host_port_conflicts_by_protocol_and_address() -> None:
    used = d.Usage()
    used.add(d.Demand(Fraction(0), Fraction(0), frozenset({("TCP", 8080, "")})))
    other = d.Usage()
    other.add(d.Demand(Fraction(0), Fraction(0), frozenset({("TCP", 8080, "10.0.0.1")})))
    nodes = [node("n1"), node("n2"), node("n3")]
    usage = {"n1": used, "n2": other}
    tcp = spec(ports=[{"name": "p", "hostPort": 8080}])
    assert d.choose(tcp, nodes, usage).ranking == ("n3",)
    udp = spec(ports=[{"name": "p", "hostPort": 8080, "protocol": "UDP"}])
    assert set(d.choose(udp, nodes, usage).ranking) == {"n1", "n2", "n3"}
    other_ip = spec(ports=[{"name": "p", "hostPort": 8080, "hostIP": "10.0.0.2"}])
    assert set(d.choose(other_ip, nodes, usage).ranking) == {"n2", "n3"}
    choice = d.choose(tcp, nodes[:2], usage)
    assert choice.message == f"0/2 nodes are available: 2 {d.PORTS}."


def test_capacity_counts_bound_tasks_and_both_resources() -> None:
    task = spec(resources={"limits": {"memory": "1Gi", "cpu": "1"}})
    full = d.usage_by_node([("n1", d.demand_of(task))] * 4)
    nodes = [sized("n1")]
    assert d.choose(task, nodes, {}).node == "n1"
    choice = d.choose(task, nodes, full)
    assert choice.node is None
    assert choice.message == "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
    # Exactly full is allowed; one byte over is not.
    three = d.usage_by_node([("n1", d.demand_of(task))] * 3)
    assert d.choose(task, nodes, three).node == "n1"


def test_a_node_without_declared_amounts_is_not_limited() -> None:
    task = spec(resources={"limits": {"memory": "1Ei"}})
    assert d.choose(task, [node("n1")], {}).node == "n1"


def test_spread_prefers_the_least_used_node_and_binpack_the_most_used() -> None:
    task = spec(resources={"limits": {"memory": "1Gi", "cpu": "1"}})
    usage = d.usage_by_node([("n2", d.demand_of(task))])
    nodes = [sized("n1"), sized("n2"), sized("n3")]
    assert d.choose(task, nodes, usage, "spread").ranking == ("n1", "n3", "n2")
    assert d.choose(task, nodes, usage, "binpack").ranking == ("n2", "n1", "n3")


def test_spread_over_nodes_without_amounts_counts_tasks() -> None:
    task = spec()
    usage = d.usage_by_node(
        [("n1", d.demand_of(task)), ("n1", d.demand_of(task)), ("n2", d.demand_of(task))]
    )
    nodes = [node("n1"), node("n2"), node("n3")]
    assert d.choose(task, nodes, usage).ranking == ("n3", "n2", "n1")
    assert d.choose(task, nodes, usage, "binpack").ranking == ("n1", "n2", "n3")


def test_ties_are_broken_by_name_whatever_the_input_order() -> None:
    nodes = [sized(n) for n in ("n3", "n1", "n2")]
    assert d.choose(spec(), nodes, {}).node == "n1"
    assert d.choose(spec(), list(reversed(nodes)), {}).node == "n1"


def test_preferred_affinity_outweighs_the_strategy() -> None:
    preferred = [
        {
            "weight": 10,
            "preference": {
                "matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]
            },
        },
        {
            "weight": 50,
            "preference": {
                "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]
            },
        },
    ]
    task = spec(
        affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": preferred}}
    )
    nodes = [
        sized("n1", labels={"disk": "ssd"}),
        sized("n2", labels={"zone": "a"}),
        sized("n3", labels={"zone": "a", "disk": "ssd"}),
        sized("n4"),
    ]
    usage = d.usage_by_node([("n3", d.demand_of(task))] * 3)
    assert d.choose(task, nodes, usage).ranking == ("n3", "n2", "n1", "n4")


def test_finished_tasks_release_their_requests() -> None:
    assert d.counts_against_node({"status": {"phase": "Running"}})
    assert d.counts_against_node({})
    assert not d.counts_against_node({"status": {"phase": "Succeeded"}})
    assert not d.counts_against_node({"status": {"phase": "Failed"}})


def test_filling_nodes_one_task_at_a_time_never_exceeds_capacity() -> None:
    task = spec(resources={"limits": {"memory": "1Gi", "cpu": "500m"}})
    nodes = [sized(f"n{i}") for i in range(5)]
    placed: list[tuple[str, d.Demand]] = []
    for _ in range(25):
        choice = d.choose(task, nodes, d.usage_by_node(placed))
        if choice.node is None:
            break
        placed.append((choice.node, d.demand_of(task)))
    assert len(placed) == 20  # 4 x 1Gi per 4Gi node
    counts = d.usage_by_node(placed)
    assert {n: u.tasks for n, u in counts.items()} == {f"n{i}": 4 for i in range(5)}
    assert (
        d.choose(task, nodes, counts).message == "0/5 nodes are available: 5 Insufficient memory."
    )
