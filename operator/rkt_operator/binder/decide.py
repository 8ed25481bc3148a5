"""Where should an unbound RktTask run? A pure function of the task and a snapshot of the
nodes and of the tasks already bound to them; ``rkt_operator.binder.loop`` does the I/O.

Filter, in this order, each node reporting the first reason it fails (kube-scheduler's
framework does the same, and its message shape is kept: ``0/5 nodes are available: 2
Insufficient memory, 3 node(s) didn't match the task's node selector or affinity.``):

1. the node is Ready and not cordoned (``spec.unschedulable``);
2. its agent published ``rktoperator.io/rkt=true`` (rkt found and usable: the fingerprint);
3. ``spec.nodeSelector`` and the required node affinity match;
4. every NoSchedule / NoExecute taint is tolerated;
5. the task's host ports are free there (same protocol and port, overlapping host IP);
6. its requests fit: memory and cpu requested by the node's bound, unfinished tasks plus
   this one stay within the node's allocatable (``status.allocatable``, or the
   ``rktoperator.io/allocatable-memory`` / ``-cpu`` annotations, which take precedence);
   a resource the node declares no amount of is not limited.

Score the nodes left, best first: the sum of the weights of the preferred affinity terms
that match, then fewer untolerated PreferNoSchedule taints, then the strategy (``spread``:
the lowest utilisation after placement, ``binpack``: the highest; utilisation is the mean
of used/allocatable over the resources the node declares, then the number of tasks), then
the node name, so equal nodes are always chosen in the same order.

Size: the filters and the scoring above are one pipeline over one snapshot of nodes and
tasks, each step a small function, kept together so the order of the steps is read in one place.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from rkt_operator.model import api
from rkt_operator.model.placement import NodeSelectorTerm, Toleration
from rkt_operator.model.quantity import QuantityError, parse_quantity
from rkt_operator.model.resources import Resources
from rkt_operator.model.spec import RktTaskSpec

Strategy = Literal["spread", "binpack"]
STRATEGIES: tuple[Strategy, ...] = ("spread", "binpack")

LABEL_RKT = api.LABEL_RKT  # set by the agent's fingerprint
ANNOTATION_MEMORY = api.PREFIX + "allocatable-memory"
ANNOTATION_CPU = api.PREFIX + "allocatable-cpu"
RESOURCES = ("memory", "cpu")
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})

# Reasons (one per filter), in kube-scheduler's words where it has them.
NOT_READY = "node(s) were not ready"
UNSCHEDULABLE = "node(s) were unschedulable"
NO_RKT = f"node(s) had no usable rkt agent (label {LABEL_RKT} is not true)"
NO_MATCH = "node(s) didn't match the task's node selector or affinity"
PORTS = "node(s) didn't have free ports for the requested host ports"
INSUFFICIENT = "Insufficient {}"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def text(self) -> str:
        return f"{{{self.key}: {self.value}}}"


@dataclass(frozen=True)
class NodeView:
    """What the decision needs of a Node object."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    ready: bool = True
    unschedulable: bool = False
    allocatable: Mapping[str, Fraction] = field(default_factory=dict)  # memory bytes, cpu cores


@dataclass(frozen=True)
class Demand:
    """A task's footprint on its node: requests and host ports ``(protocol, port, hostIP)``."""

    memory: Fraction
    cpu: Fraction
    host_ports: frozenset[tuple[str, int, str]] = frozenset()

    def amount(self, resource: str) -> Fraction:
        return self.memory if resource == "memory" else self.cpu


@dataclass
class Usage:
    """The sum of the demands already placed on one node."""

    memory: Fraction = Fraction(0)
    cpu: Fraction = Fraction(0)
    tasks: int = 0
    host_ports: list[tuple[str, int, str]] = field(default_factory=list)

    def add(self, demand: Demand) -> None:
        self.memory += demand.memory
        self.cpu += demand.cpu
        self.tasks += 1
        self.host_ports.extend(demand.host_ports)

    def amount(self, resource: str) -> Fraction:
        return self.memory if resource == "memory" else self.cpu


@dataclass(frozen=True)
class Choice:
    """The decision: a node (None when none fits), per-reason node counts, a message."""

    node: str | None
    message: str
    reasons: Mapping[str, int] = field(default_factory=dict)
    ranking: tuple[str, ...] = ()  # eligible nodes, best first


# -- reading objects ---------------------------------------------------------------------


def _quantity(value: object) -> Fraction | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        amount = parse_quantity(value)
    except QuantityError:
        return None
    return amount if amount >= 0 else None


def node_view(node: Mapping[str, Any]) -> NodeView:
    """A Node object (as the API returns it, camelCase) as the decision sees it."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    annotations = meta.get("annotations") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
        if isinstance(c, Mapping)
    )
    taints = tuple(
        Taint(str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or ""))
        for t in spec.get("taints") or ()
        if isinstance(t, Mapping)
    )
    allocatable: dict[str, Fraction] = {}
    declared = status.get("allocatable") or {}
    for resource, annotation in (("memory", ANNOTATION_MEMORY), ("cpu", ANNOTATION_CPU)):
        amount = _quantity(annotations.get(annotation))
        if amount is None:
            amount = _quantity(declared.get(resource))
        if amount is not None:
            allocatable[resource] = amount
    return NodeView(
        name=str(meta.get("name") or ""),
        labels=dict(meta.get("labels") or {}),
        taints=taints,
        ready=ready,
        unschedulable=bool(spec.get("unschedulable")),
        allocatable=allocatable,
    )


def demand_of(spec: RktTaskSpec) -> Demand:
    """Requests (the limits in force when absent) and the host ports of a task."""
    resources = spec.resources
    if resources is None:
        resources = Resources()
    ports = frozenset(
        (p.protocol, p.host_port, p.host_ip or "") for p in spec.ports if p.host_port is not None
    )
    return Demand(
        memory=parse_quantity(resources.effective_request("memory")),
        cpu=parse_quantity(resources.effective_request("cpu")),
        host_ports=ports,
    )


def counts_against_node(task: Mapping[str, Any]) -> bool:
    """A bound task holds its requests until it finished (Succeeded or Failed for good)
    and is gone; one being deleted still runs until its agent stopped it."""
    phase = (task.get("status") or {}).get("phase")
    return phase not in FINISHED_PHASES


def usage_by_node(placed: Iterable[tuple[str, Demand]]) -> dict[str, Usage]:
    """Sum the demands of ``(node name, demand)`` pairs per node."""
    usage: dict[str, Usage] = {}
    for node, demand in placed:
        usage.setdefault(node, Usage()).add(demand)
    return usage


# -- matching ----------------------------------------------------------------------------


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _expression_matches(
    labels: Mapping[str, str], key: str, op: str, values: Sequence[str]
) -> bool:
    value = labels.get(key)
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    number, bound = _int(value), _int(values[0] if values else None)
    if number is None or bound is None:
        return False
    return number > bound if op == "Gt" else number < bound


def term_matches(term: NodeSelectorTerm, node: NodeView) -> bool:
    """All expressions and fields hold; an empty term matches nothing (as in Kubernetes)."""
    if not term.match_expressions and not term.match_fields:
        return False
    fields = {"metadata.name": node.name}
    return all(
        _expression_matches(node.labels, e.key, e.operator, e.values)
        for e in term.match_expressions
    ) and all(_expression_matches(fields, e.key, e.operator, e.values) for e in term.match_fields)


def selector_matches(spec: RktTaskSpec, node: NodeView) -> bool:
    """nodeSelector and the required node affinity (one of its terms) both hold."""
    if any(node.labels.get(k) != v for k, v in spec.node_selector.items()):
        return False
    affinity = spec.affinity.node_affinity if spec.affinity else None
    required = affinity.required_during_scheduling_ignored_during_execution if affinity else None
    return required is None or any(term_matches(t, node) for t in required.node_selector_terms)


def tolerates(tolerations: Sequence[Toleration], taint: Taint) -> bool:
    for t in tolerations:
        if t.effect and t.effect != taint.effect:
            continue
        if t.key and t.key != taint.key:
            continue
        if t.operator == "Exists" or (t.value or "") == taint.value:
            return True
    return False


def untolerated(spec: RktTaskSpec, node: NodeView, effects: Iterable[str]) -> list[Taint]:
    wanted = set(effects)
    return [t for t in node.taints if t.effect in wanted and not tolerates(spec.tolerations, t)]


def _ports_conflict(a: tuple[str, int, str], b: tuple[str, int, str]) -> bool:
    wildcard = ("", "0.0.0.0")  # noqa: S104 - compared, not bound
    if a[0] != b[0] or a[1] != b[1]:
        return False
    return a[2] in wildcard or b[2] in wildcard or a[2] == b[2]


def filter_node(
    spec: RktTaskSpec, demand: Demand, node: NodeView, usage: Usage | None
) -> list[str]:
    """Why ``node`` cannot take the task (empty: it can)."""
    if not node.ready:
        return [NOT_READY]
    if node.unschedulable:
        return [UNSCHEDULABLE]
    if node.labels.get(LABEL_RKT) != "true":
        return [NO_RKT]
    if not selector_matches(spec, node):
        return [NO_MATCH]
    if taints := untolerated(spec, node, ("NoSchedule", "NoExecute")):
        return [f"node(s) had untolerated taint {taints[0].text()}"]
    usage = usage or Usage()
    if any(_ports_conflict(p, q) for p in demand.host_ports for q in usage.host_ports):
        return [PORTS]
    short = [
        INSUFFICIENT.format(r)
        for r in RESOURCES
        if r in node.allocatable and usage.amount(r) + demand.amount(r) > node.allocatable[r]
    ]
    return short


# -- scoring -----------------------------------------------------------------------------


def _preference(spec: RktTaskSpec, node: NodeView) -> int:
    affinity = spec.affinity.node_affinity if spec.affinity else None
    if affinity is None:
        return 0
    return sum(
        term.weight
        for term in affinity.preferred_during_scheduling_ignored_during_execution
        if term_matches(term.preference, node)
    )


def utilisation(node: NodeView, usage: Usage | None, demand: Demand) -> Fraction:
    """Mean of (used + this task) / allocatable over the resources the node declares."""
    usage = usage or Usage()
    shares = [
        (usage.amount(r) + demand.amount(r)) / node.allocatable[r]
        for r in RESOURCES
        if node.allocatable.get(r)
    ]
    return sum(shares, Fraction(0)) / len(shares) if shares else Fraction(0)


def rank(
    spec: RktTaskSpec,
    demand: Demand,
    nodes: Sequence[NodeView],
    usage: Mapping[str, Usage],
    strategy: Strategy,
) -> list[str]:
    """Eligible node names, best first (deterministic)."""
    sign = 1 if strategy == "spread" else -1

    def key(node: NodeView) -> tuple[int, int, Fraction, int, str]:
        used = usage.get(node.name)
        return (
            -_preference(spec, node),
            len(untolerated(spec, node, ("PreferNoSchedule",))),
            sign * utilisation(node, used, demand),
            sign * (used.tasks if used else 0),
            node.name,
        )

    return [n.name for n in sorted(nodes, key=key)]


def summarise(total: int, reasons: Mapping[str, int]) -> str:
    """kube-scheduler's message: ``0/5 nodes are available: 2 Insufficient memory, ...``."""
    if total == 0:
        return "0/0 nodes are available: no Node objects exist."
    parts = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return f"0/{total} nodes are available: {parts}."


def choose(
    spec: RktTaskSpec,
    nodes: Sequence[NodeView],
    usage: Mapping[str, Usage],
    strategy: Strategy = "spread",
) -> Choice:
    """The node for an unbound task, or None with the reasons every node failed."""
    demand = demand_of(spec)
    reasons: Counter[str] = Counter()
    eligible: list[NodeView] = []
    for node in nodes:
        failed = filter_node(spec, demand, node, usage.get(node.name))
        reasons.update(failed)
        if not failed:
            eligible.append(node)
    if not eligible:
        return Choice(None, summarise(len(nodes), reasons), dict(reasons))
    ranking = rank(spec, demand, eligible, usage, strategy)
    return Choice(
        ranking[0],
        f"bound to node {ranking[0]} ({len(eligible)}/{len(nodes)} nodes eligible, {strategy})",
        dict(reasons),
        tuple(ranking),
    )
