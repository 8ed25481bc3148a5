"""Generates the RktTask CustomResourceDefinition from the pydantic models, so the API
server and the agent validate with one definition.

``python -m rkt_operator.model.crd`` prints the YAML (``make crds`` writes it to
``crds/rkttasks.rktoperator.io.yaml`` and the Helm chart's copy). The JSON schema pydantic
produces is turned into a structural OpenAPI v3 schema: references inlined, ``Optional``
unions collapsed, int-or-string kept in the one form Kubernetes allows, titles dropped.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from pydantic import BaseModel

from rkt_operator.model import api
from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.model.status import READY, RktTaskStatus

GROUP = api.GROUP
VERSION = api.VERSION
KIND = api.KIND
PLURAL = api.PLURAL
SINGULAR = api.SINGULAR
SHORT_NAMES = api.SHORT_NAMES
CATEGORIES = ("rkt",)
CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_FILE = f"crds/{CRD_NAME}.yaml"
HELM_CRD_FILE = f"helm/rkt-operator/crds/{CRD_NAME}.yaml"
HEADER = (
    "# Generated from operator/rkt_operator/model by `make crds`; do not edit by hand.\n"
    "# The copy in helm/rkt-operator/crds/ is identical (a test checks both).\n"
)

_SCALAR_TYPES = (str, int, float, bool)


def _merge(inner: dict[str, Any], outer: dict[str, Any]) -> dict[str, Any]:
    """Outer keys (a field's description, extra rules) win; CEL rule lists add up."""
    merged = {**inner, **outer}
    rules = inner.get("x-kubernetes-validations", []) + outer.get("x-kubernetes-validations", [])
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged


def _structural(node: dict[str, Any], defs: dict[str, Any], *, defaults: bool) -> dict[str, Any]:
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        return _structural(_merge(target, node), defs, defaults=defaults)
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o != {"type": "null"}]
        if "default" in node and node["default"] is None:
            del node["default"]
        if len(options) == 1:
            return _structural(_merge(options[0], node), defs, defaults=defaults)
        if sorted(o.get("type", "") for o in options) != ["integer", "string"]:
            raise ValueError(f"cannot express this union in a structural schema: {options}")
        # The only union Kubernetes allows: int-or-string, types listed under anyOf.
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        node["x-kubernetes-int-or-string"] = True
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (key == "additionalProperties" and value is False):
            continue
        if key == "default":
            if defaults and value is not None and isinstance(value, _SCALAR_TYPES):
                out[key] = value
        elif key == "properties":
            out[key] = {
                name: _structural(sub, defs, defaults=defaults) for name, sub in value.items()
            }
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, defs, defaults=defaults)
        elif key == "description":
            out[key] = " ".join(value.split())  # docstrings become one-line descriptions
        else:
            out[key] = value
    return _ordered(out)


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """description, type, then the other keys alphabetically: a stable, readable CRD."""
    first = [k for k in ("description", "type") if k in node]
    return {key: node[key] for key in first + sorted(k for k in node if k not in first)}


def openapi_schema(model: type[BaseModel], *, defaults: bool = True) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model`` (camelCase property names).

    With ``defaults=False`` no ``default`` is emitted (status: the agent writes every field).
    """
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    return _structural(schema, defs, defaults=defaults)


def _printer_columns() -> list[dict[str, Any]]:
    def column(
        name: str, type_: str, path: str, description: str, priority: int = 0
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": name,
            "type": type_,
            "jsonPath": path,
            "description": description,
        }
        if priority:
            entry["priority"] = priority
        return entry

    return [
        column("Node", "string", ".spec.nodeName", "Node whose agent runs the task."),
        column("Phase", "string", ".status.phase", "Summary of the pod's life."),
        column("UUID", "string", ".status.uuid", "UUID of the current rkt pod."),
        column("IP", "string", ".status.ip", "IP address of the pod."),
        column("Restarts", "integer", ".status.restarts", "Restarts by the agent."),
        column(
            "Ready",
            "string",
            f'.status.conditions[?(@.type=="{READY}")].status',
            "Status of the Ready condition.",
        ),
        column("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
        column("Image", "string", ".spec.image", "Image of the app.", priority=1),
        column("Ports", "string", ".status.portSummary", "Published ports.", priority=1),
        column(
            "Restart-At",
            "string",
            ".status.backoff.restartAt",
            "When a pod in CrashLoopBackOff is started again (status.backoff).",
            priority=1,
        ),
    ]


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition object, ready to serialise."""
    spec_schema = openapi_schema(RktTaskSpec)
    status_schema = openapi_schema(RktTaskStatus, defaults=False)
    root = {
        "type": "object",
        "description": "A task run as an rkt pod on one node (successor of a Nomad task with "
        'driver "rkt").',
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": f"Versioned schema of this object: {api.API_VERSION}.",
            },
            "kind": {"type": "string", "description": "RktTask."},
            "metadata": {"type": "object"},  # only type is allowed here
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/part-of": "rkt-operator"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                    "selectableFields": [{"jsonPath": ".spec.nodeName"}],
                }
            ],
        },
    }


def render() -> str:
    """The CRD as the YAML text committed in ``crds/``."""
    body = yaml.safe_dump(build_crd(), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
