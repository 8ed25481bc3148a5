"""Placement fields of an RktTask: ``nodeSelector``, ``affinity.nodeAffinity`` and
``tolerations``, in the shape a Pod has them, read by the binder (``rkt-operator schedule``)
when ``spec.nodeName`` is not set.

The semantics are Kubernetes' (kube-scheduler's NodeAffinity and TaintToleration plugins):

- ``nodeSelector``: every key must be a label of the node with exactly that value.
- ``requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms``: at least one term must
  match; a term matches when all its expressions and fields match.
- ``preferredDuringSchedulingIgnoredDuringExecution``: each matching term adds its weight
  to the node's score.
- ``tolerations``: a node whose taint with effect NoSchedule or NoExecute is tolerated by
  none of them is not eligible; PreferNoSchedule taints only lower the score.

Only the shapes are validated here (and by the CRD's schema and CEL rules, with the same
messages); matching nodes is ``rkt_operator.placement``'s business.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, JsonValue, model_validator

from rkt_operator.model import fields as f
from rkt_operator.model.fields import KubeModel as _Model

# A label key: an optional DNS subdomain prefix and '/', then a name (Kubernetes' qualified
# name). Label values: at most 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends.
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
INTEGER = r"^-?[0-9]+$"
MAX_TERMS = 16
MAX_EXPRESSIONS = 16
MAX_VALUES = 64
MAX_SELECTOR = 32
MAX_TOLERATIONS = 32

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
FieldOperator = Literal["In", "NotIn"]
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
TolerationOperator = Literal["Exists", "Equal"]

LabelKey = Annotated[str, f.Text(LABEL_KEY, "a label key ([prefix/]name)", 316)]
LabelValue = Annotated[str, f.Text(LABEL_VALUE, "a label value", 63, min_length=0)]


def _requirement_problem(operator: str, values: list[str]) -> str | None:
    """The Kubernetes rule an operator puts on its values, or None when they follow it."""
    if operator in ("In", "NotIn") and not values:
        return f"operator {operator} needs at least one value"
    if operator in ("Exists", "DoesNotExist") and values:
        return f"operator {operator} takes no values"
    if operator in ("Gt", "Lt") and (len(values) != 1 or not re.fullmatch(INTEGER, values[0])):
        return f"operator {operator} needs exactly one value, an integer"
    return None


_REQUIREMENT_RULES: list[JsonValue] = [
    f.cel(
        "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
        "spec.affinity.nodeAffinity: operator In and NotIn need at least one value",
        field_path=".values",
    ),
    f.cel(
        "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values)"
        " || size(self.values) == 0",
        "spec.affinity.nodeAffinity: operator Exists and DoesNotExist take no values",
        field_path=".values",
    ),
    f.cel(
        "!(self.operator in ['Gt', 'Lt']) || (has(self.values) && size(self.values) == 1"
        " && self.values[0].matches('^-?[0-9]+$'))",
        "spec.affinity.nodeAffinity: operator Gt and Lt need exactly one value, an integer",
        field_path=".values",
    ),
]


class NodeSelectorRequirement(_Model):
    """A node label that must (or must not) exist or have one of some values."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _REQUIREMENT_RULES})

    key: LabelKey = Field(description="The node label key the requirement applies to.")
    operator: Operator = Field(
        description="In, NotIn (the label's value is / is not one of values; NotIn also "
        "matches a node without the label), Exists, DoesNotExist (no values), Gt, Lt (the "
        "label's value, read as an integer, is greater / less than the single value)."
    )
    values: list[LabelValue] = Field(
        default_factory=list,
        max_length=MAX_VALUES,
        description="Values for In and NotIn (at least one), one integer for Gt and Lt, none "
        "for Exists and DoesNotExist.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )

    @model_validator(mode="after")
    def _values_fit_operator(self) -> NodeSelectorRequirement:
        if problem := _requirement_problem(self.operator, self.values):
            raise ValueError(problem)
        return self


class NodeFieldRequirement(_Model):
    """A requirement on a field of the Node object (only metadata.name, as for Pods)."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_REQUIREMENT_RULES[0]]}
    )

    key: Annotated[str, f.Text(r"^metadata[.]name$", "metadata.name", 13)] = Field(
        description="The Node field: metadata.name (the only one, as for Pods)."
    )
    operator: FieldOperator = Field(description="In or NotIn.")
    values: list[Annotated[str, f.Text(f.DNS1123_SUBDOMAIN, "a node name", 253)]] = Field(
        default_factory=list,
        max_length=MAX_VALUES,
        description="Node names (at least one).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )

    @model_validator(mode="after")
    def _values_fit_operator(self) -> NodeFieldRequirement:
        if problem := _requirement_problem(self.operator, self.values):
            raise ValueError(problem)
        return self


class NodeSelectorTerm(_Model):
    """Requirements that must all hold (an empty term matches no node, as in Kubernetes)."""

    match_expressions: list[NodeSelectorRequirement] = Field(
        default_factory=list,
        max_length=MAX_EXPRESSIONS,
        description="Requirements on the node's labels.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    match_fields: list[NodeFieldRequirement] = Field(
        default_factory=list,
        max_length=MAX_EXPRESSIONS,
        description="Requirements on the node's fields (metadata.name).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


class NodeSelector(_Model):
    """Terms of which at least one must match."""

    node_selector_terms: list[NodeSelectorTerm] = Field(
        min_length=1,
        max_length=MAX_TERMS,
        description="The node must match at least one of these terms.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


class PreferredSchedulingTerm(_Model):
    """A term that, when the node matches it, adds its weight to the node's score."""

    weight: int = Field(ge=1, le=100, description="Weight added to a matching node (1-100).")
    preference: NodeSelectorTerm = Field(description="The term a node should match.")


class NodeAffinity(_Model):
    """Node affinity rules, as a Pod's spec.affinity.nodeAffinity."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        None,
        description="Nodes not matching this selector are not eligible. Only read when the "
        "task is bound: a later change of the node's labels does not move the task.",
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list,
        max_length=MAX_TERMS,
        description="Eligible nodes matching these terms are preferred (sum of weights).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


class Affinity(_Model):
    """Scheduling constraints beyond nodeSelector."""

    node_affinity: NodeAffinity | None = Field(None, description="Node affinity rules.")


_TOLERATION_RULES: list[JsonValue] = [
    f.cel(
        "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
        "spec.tolerations[].value must be empty when operator is Exists",
        field_path=".value",
    ),
    f.cel(
        "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
        "spec.tolerations[]: an empty key needs operator Exists (it tolerates every taint)",
        field_path=".operator",
    ),
    f.cel(
        "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
        "spec.tolerations[].tolerationSeconds needs effect NoExecute",
        field_path=".tolerationSeconds",
    ),
]


class Toleration(_Model):
    """Lets the task be placed on a node with a matching taint (Pod toleration semantics)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _TOLERATION_RULES})

    key: Annotated[str, f.Text(LABEL_KEY, "a taint key ([prefix/]name)", 316)] | None = Field(
        None, description="The taint key; empty with operator Exists tolerates every taint."
    )
    operator: TolerationOperator = Field(
        "Equal", description="Equal (key and value match) or Exists (key matches, no value)."
    )
    value: LabelValue | None = Field(None, description="The taint value (operator Equal).")
    effect: TaintEffect | None = Field(
        None,
        description="The taint effect tolerated: NoSchedule, PreferNoSchedule or NoExecute; "
        "empty tolerates all effects.",
    )
    toleration_seconds: int | None = Field(
        None,
        ge=0,
        le=2**31 - 1,
        description="Accepted for compatibility with Pods (effect NoExecute); the binder never "
        "evicts, so it has no effect on placement.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("value must be empty when operator is Exists")
        if not self.key and self.operator != "Exists":
            raise ValueError("an empty key needs operator Exists (it tolerates every taint)")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds needs effect NoExecute")
        return self
