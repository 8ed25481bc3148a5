"""Nomad ``constraint`` / ``affinity`` stanzas -> ``spec.nodeName``, ``nodeSelector`` and
``affinity.nodeAffinity`` of an RktTask.

Node attributes become the node labels that mean the same (the agent's fingerprint labels
for ``${driver.rkt*}``, the well-known Kubernetes labels for the kernel and the CPU
architecture, a node label of the same key for client ``${meta.KEY}``). Operators:

- ``=`` / ``==`` / ``is`` -> ``nodeSelector`` (constraint) or an ``In`` preference;
  ``!=`` / ``not`` -> ``NotIn``; ``is_set`` -> ``Exists``; ``is_not_set`` -> ``DoesNotExist``;
  ``>`` / ``<`` (and ``>=`` / ``<=``) on integers -> ``Gt`` / ``Lt``;
- a constraint equal to ``${node.unique.name}`` (or ``${attr.unique.hostname}``) pins the
  task: ``nodeName``; ``!=`` on them becomes a ``matchFields`` ``NotIn`` on the node name;
- affinity weights (-100..100) become preferred terms (weight 1..100; a negative weight
  prefers nodes *not* matching);
- ``version``, ``semver``, ``regexp``, ``set_contains*``, ``distinct_*`` and attributes
  without a label have no equivalent: ``Placed.unconverted``.

With a node given (``--node``) the task is bound to it: ``nodeSelector`` and ``affinity``
would not be read (the binder only places tasks without ``nodeName``), so the rules are
then reported as not checked rather than written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rkt_operator.convert.nomad import Rule
from rkt_operator.model import api

PIN_ATTRIBUTES = ("${node.unique.name}", "${attr.unique.hostname}")
RKT_ATTRIBUTES = ("${driver.rkt}", "${attr.driver.rkt}")
# Nomad node attribute -> the node label with the same meaning here.
LABELS = {
    "${driver.rkt}": api.LABEL_RKT,
    "${attr.driver.rkt}": api.LABEL_RKT,
    "${driver.rkt.version}": api.LABEL_RKT_VERSION,
    "${attr.driver.rkt.version}": api.LABEL_RKT_VERSION,
    "${driver.rkt.appc.version}": api.LABEL_APPC_VERSION,
    "${attr.driver.rkt.appc.version}": api.LABEL_APPC_VERSION,
    "${driver.rkt.volumes.enabled}": api.LABEL_VOLUMES,
    "${attr.driver.rkt.volumes.enabled}": api.LABEL_VOLUMES,
    "${attr.kernel.name}": "kubernetes.io/os",
    "${attr.cpu.arch}": "kubernetes.io/arch",
}
# Boolean attributes: Nomad says "1", the fingerprint labels say "true".
_BOOLEAN_LABELS = (api.LABEL_RKT, api.LABEL_VOLUMES)
_META = re.compile(r"^\$\{(?:node\.)?meta\.([A-Za-z0-9][-A-Za-z0-9_.]*)\}$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_EQUAL = ("=", "==", "is")
_NOT_EQUAL = ("!=", "not")


@dataclass
class Placed:
    """What the rules became: the spec fields, and the rules without an equivalent."""

    node: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    required: list[dict[str, Any]] = field(default_factory=list)  # matchExpressions
    excluded_nodes: list[str] = field(default_factory=list)  # matchFields NotIn
    preferred: list[dict[str, Any]] = field(default_factory=list)
    unconverted: list[tuple[str, Rule, str]] = field(default_factory=list)  # stanza, rule, why
    implied: list[tuple[str, Rule]] = field(default_factory=list)  # hold on every rkt node

    def spec_fields(self) -> dict[str, Any]:
        """``nodeSelector`` and ``affinity`` for a task the binder places."""
        out: dict[str, Any] = {}
        if self.node_selector:
            out["nodeSelector"] = dict(self.node_selector)
        affinity: dict[str, Any] = {}
        term: dict[str, Any] = {}
        if self.required:
            term["matchExpressions"] = list(self.required)
        if self.excluded_nodes:
            term["matchFields"] = [
                {"key": "metadata.name", "operator": "NotIn", "values": self.excluded_nodes}
            ]
        if term:
            affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
                "nodeSelectorTerms": [term]
            }
        if self.preferred:
            affinity["preferredDuringSchedulingIgnoredDuringExecution"] = list(self.preferred)
        if affinity:
            out["affinity"] = {"nodeAffinity": affinity}
        return out


def _label(attribute: str) -> str | None:
    if attribute in LABELS:
        return LABELS[attribute]
    match = _META.match(attribute)
    return match[1] if match else None


def _value(label: str, value: str) -> str:
    if label in _BOOLEAN_LABELS and value in ("1", "true"):
        return "true"
    if label in _BOOLEAN_LABELS and value in ("0", "false"):
        return "false"
    return value


def _expression(rule: Rule, label: str) -> tuple[dict[str, Any] | None, str]:
    """A matchExpressions entry for ``rule`` on ``label``, or (None, why not)."""
    op, value = rule.operator, _value(label, rule.value)
    if op in ("is_set",):
        return {"key": label, "operator": "Exists"}, ""
    if op in ("is_not_set",):
        return {"key": label, "operator": "DoesNotExist"}, ""
    if op in (*_EQUAL, *_NOT_EQUAL):
        if not _LABEL_VALUE.match(value) or len(value) > 63:
            return None, f"{value!r} cannot be a label value"
        return {"key": label, "operator": "In" if op in _EQUAL else "NotIn", "values": [value]}, ""
    if op in (">", ">=", "<", "<="):
        try:
            number = int(value)
        except ValueError:
            return None, "Gt/Lt compare integers only"
        bound = number - 1 if op == ">=" else number + 1 if op == "<=" else number
        operator = "Gt" if op.startswith(">") else "Lt"
        return {"key": label, "operator": operator, "values": [str(bound)]}, ""
    return None, f"operator {op!r} has no node-affinity equivalent"


def place(
    constraints: list[Rule], affinities: list[Rule], *, node: str | None, system: bool = False
) -> Placed:
    """Place one task from its job, group and task rules (in that order)."""
    placed = Placed(node=node)
    for rule in constraints:
        if rule.attribute in PIN_ATTRIBUTES and rule.operator in _EQUAL:
            if not system:  # a system job runs on every node given
                placed.node = rule.value
            continue
        if rule.attribute in PIN_ATTRIBUTES and rule.operator in _NOT_EQUAL:
            placed.excluded_nodes.append(rule.value)
            continue
        if rule.attribute in RKT_ATTRIBUTES and (
            rule.operator == "is_set" or (rule.operator in _EQUAL and rule.value in ("1", "true"))
        ):
            placed.implied.append(("constraint", rule))  # the binder requires rkt anyway
            continue
        label = _label(rule.attribute)
        if label is None:
            placed.unconverted.append(("constraint", rule, "no node label has this meaning"))
            continue
        expression, why = _expression(rule, label)
        if expression is None:
            placed.unconverted.append(("constraint", rule, why))
        elif expression["operator"] == "In" and label not in placed.node_selector:
            placed.node_selector[label] = expression["values"][0]
        else:
            placed.required.append(expression)
    for rule in affinities:
        label = _label(rule.attribute)
        weight = rule.weight if rule.weight is not None else 50
        if label is None or weight == 0:
            why = "no node label has this meaning" if label is None else "weight 0"
            placed.unconverted.append(("affinity", rule, why))
            continue
        expression, why = _expression(rule, label)
        if expression is None:
            placed.unconverted.append(("affinity", rule, why))
            continue
        if weight < 0:  # prefer the nodes that do not match
            flip = {"In": "NotIn", "NotIn": "In", "Exists": "DoesNotExist",
                    "DoesNotExist": "Exists"}  # fmt: skip
            if expression["operator"] not in flip:
                placed.unconverted.append(("affinity", rule, "a negative weight on Gt/Lt"))
                continue
            expression = {**expression, "operator": flip[expression["operator"]]}
        placed.preferred.append(
            {"weight": min(abs(weight), 100), "preference": {"matchExpressions": [expression]}}
        )
    return placed
