"""Resolution of a task's ``spec.env`` into the values handed to rkt (``ResolvedVar``).

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
    """Resolve every variable, in order (a later definition of a name wins downstream)."""
    namespace = str((body.get("metadata") or {}).get("namespace") or "")
    resolved: list[ResolvedVar] = []
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
