"""Releasing tasks whose node is gone (``rkt-operator release-orphans``).

Each agent watches only the tasks of its own node, so when a Node is removed for good nobody
is left to run the deletion of its tasks: they would keep ``rktoperator.io/finalizer`` and
stay ``Terminating`` forever. An administrator (or a CronJob with a ServiceAccount allowed to
list Nodes and RktTasks and to patch RktTasks) runs this command: it drops the finalizer
from every task that is being deleted and whose ``spec.nodeName`` names no existing Node.
Tasks that are not being deleted are only reported. Nothing runs on the vanished node, so
there is nothing to stop there; if the node ever comes back, rkt's own garbage collection
and the agent's start-up (it adopts only pods of tasks that still exist) leave no trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rkt_operator.model.api import FINALIZER


@dataclass(frozen=True)
class Orphan:
    namespace: str
    name: str
    node: str
    deleting: bool

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def find_orphans(
    tasks: Iterable[Mapping[str, Any]], nodes: set[str], *, finalizer: str = FINALIZER
) -> list[Orphan]:
    """Tasks bound to a node that does not exist (those being deleted and still holding our
    finalizer are the ones to release). Tasks bound to no node are not orphans."""
    found: list[Orphan] = []
    for task in tasks:
        meta = task.get("metadata") or {}
        node = str((task.get("spec") or {}).get("nodeName") or "")
        if not node or node in nodes:
            continue
        deleting = bool(meta.get("deletionTimestamp")) and finalizer in (
            meta.get("finalizers") or []
        )
        found.append(
            Orphan(
                namespace=str(meta.get("namespace") or ""),
                name=str(meta.get("name") or ""),
                node=node,
                deleting=deleting,
            )
        )
    return sorted(found, key=lambda o: (o.namespace, o.name))
