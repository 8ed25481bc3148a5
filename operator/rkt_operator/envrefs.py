"""Resolution of a task's environment into the values handed to rkt (``ResolvedVar``).

Every task first gets the agent's task environment (``TASK_ENVIRONMENT``), the Kubernetes
form of the variables Nomad's driver gave every task (``NOMAD_ALLOC_DIR``,
``NOMAD_TASK_DIR``, ``NOMAD_SECRETS_DIR``, ``NOMAD_TASK_NAME``...): the container paths of
the three task directories and the task's identity. ``spec.env`` comes after it, so a
variable of the same name there wins.

Literal values pass through; ``fieldRef`` reads the task object itself (``metadata.name``,
``metadata.namespace``, ``metadata.uid``, ``metadata.labels['k']``,
``metadata.annotations['k']``, ``spec.nodeName``); ``secretKeyRef`` and ``configMapKeyRef``
read one key through the API. A missing Secret/ConfigMap/key raises ``DependencyError``
naming the object and key (never a value) unless the reference is ``optional``, in which case
the variable is left out, as the kubelet does. Values from Secrets are marked ``secret``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from rkt_operator.errors import DependencyError, SpecError
from rkt_operator.model.env import EnvVar
from rkt_operator.rkt.argv import ResolvedVar

_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")
_PLAIN_FIELDS = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "metadata.uid": ("metadata", "uid"),
    "spec.nodeName": ("spec", "nodeName"),
}


# The agent's task environment: variable -> its value (a literal, or a field of the task).
TASK_ENVIRONMENT: tuple[tuple[str, str, str], ...] = (
    ("RKT_ALLOC_DIR", "/alloc", "the task's alloc directory (Nomad NOMAD_ALLOC_DIR)"),
    ("RKT_TASK_DIR", "/local", "the task's own directory (Nomad NOMAD_TASK_DIR)"),
    ("RKT_SECRETS_DIR", "/secrets", "the task's secrets directory (Nomad NOMAD_SECRETS_DIR)"),
    ("RKT_TASK_NAME", "metadata.name", "the RktTask's name (Nomad NOMAD_TASK_NAME)"),
    ("RKT_TASK_NAMESPACE", "metadata.namespace", "the RktTask's namespace"),
    ("RKT_TASK_UID", "metadata.uid", "the RktTask's UID (Nomad NOMAD_ALLOC_ID)"),
    ("RKT_NODE_NAME", "spec.nodeName", "the node running the task"),
)


def task_environment(body: Mapping[str, Any]) -> list[ResolvedVar]:
    """The variables every task gets before its ``spec.env`` (see ``TASK_ENVIRONMENT``)."""
    return [
        ResolvedVar(name, source if source.startswith("/") else field_value(body, source))
        for name, source, _ in TASK_ENVIRONMENT
    ]


class ValueSource(Protocol):
    """Where Secret and ConfigMap keys are read from (``kubeapi.KubeApi``)."""

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None: ...

    async def configmap_value(self, namespace: str, name: str, key: str) -> str | None: ...


def field_value(body: Mapping[str, Any], path: str) -> str:
    """The value of a supported ``fieldRef.fieldPath`` on the task object; an absent label
    or annotation is the empty string (as in a Pod)."""
    if path in _PLAIN_FIELDS:
        section, key = _PLAIN_FIELDS[path]
        value = (body.get(section) or {}).get(key)
        return "" if value is None else str(value)
    match = _SUBSCRIPT.match(path)
    if match:
        bag = (body.get("metadata") or {}).get(match.group(1)) or {}
        return str(bag.get(match.group(2), ""))
    raise SpecError(f"unsupported fieldRef.fieldPath {path!r}", field="spec.env")


async def resolve_env(
    env: Sequence[EnvVar], body: Mapping[str, Any], *, source: ValueSource
) -> list[ResolvedVar]:
    """The task environment, then every variable of ``env`` in order (a later definition
    of a name wins downstream, so ``spec.env`` overrides the task environment)."""
    namespace = str((body.get("metadata") or {}).get("namespace") or "")
    resolved: list[ResolvedVar] = task_environment(body)
    for index, var in enumerate(env):
        where = f"spec.env[{index}] ({var.name})"
        ref = var.value_from
        if ref is None:
            resolved.append(ResolvedVar(var.name, var.value or ""))
        elif ref.field_ref is not None:
            resolved.append(ResolvedVar(var.name, field_value(body, ref.field_ref.field_path)))
        elif ref.secret_key_ref is not None:
            sel = ref.secret_key_ref
            value = await source.secret_value(namespace, sel.name, sel.key)
            if value is None:
                if sel.optional:
                    continue
                raise DependencyError(
                    f"{where}: Secret {namespace}/{sel.name} or its key {sel.key!r} not found"
                )
            resolved.append(ResolvedVar(var.name, value, secret=True))
        elif ref.config_map_key_ref is not None:
            cm = ref.config_map_key_ref
            value = await source.configmap_value(namespace, cm.name, cm.key)
            if value is None:
                if cm.optional:
                    continue
                raise DependencyError(
                    f"{where}: ConfigMap {namespace}/{cm.name} or its key {cm.key!r} not found"
                )
            resolved.append(ResolvedVar(var.name, value))
    return resolved
