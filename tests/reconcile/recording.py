"""Fakes for the in-process reconciler tier: a recording ``StatusApi`` and a settable clock.

``RecordingApi`` holds RktTask objects in memory the way the API server would for the calls
the reconciler makes: a status PATCH is a JSON merge patch (RFC 7386) applied to the
object's status, bumping its resourceVersion, and the object comes back. Every patch is
recorded, so a test can pin how many writes a pass makes and what they said. Secrets and
ConfigMaps are plain dictionaries. Nothing here decides anything: the reconciler, the
executor and rkt-sim under test are the real ones.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rkt_operator.errors import EventNotPosted
from rkt_operator.kubeapi import task_event


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass
class Patch:
    namespace: str
    name: str
    body: dict[str, Any]


@dataclass
class RecordingApi:
    """The status-writing protocol (``reconcile.statuswriter.StatusApi``), recorded."""

    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    patches: list[Patch] = field(default_factory=list)
    secrets: dict[tuple[str, str, str], str] = field(default_factory=dict)
    configmaps: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # Events the reconciler posted itself, by name (a second post of a name is refused, as
    # the API server answers 409); ``events_down``: posts to refuse as if the API were down.
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    events_down: int = 0
    _version: int = 100

    def create(self, name: str, image: Path, *, uid: str, **spec: Any) -> dict[str, Any]:
        """Store a new RktTask (generation 1, no status) and return a copy, as a watch
        would hand it to the agent."""
        self._version += 1
        body = {
            "apiVersion": "rktoperator.io/v1alpha1",
            "kind": "RktTask",
            "metadata": {
                "namespace": "default",
                "name": name,
                "uid": uid,
                "generation": 1,
                "resourceVersion": str(self._version),
            },
            "spec": {
                "nodeName": "node-a",
                "image": str(image),
                "insecureOptions": ["image"],
                **spec,
            },
        }
        self.objects[("default", name)] = body
        return self.get(name)

    def get(self, name: str) -> dict[str, Any]:
        """The object as the API server holds it now (a copy: what a watch event carries)."""
        return copy.deepcopy(self.objects[("default", name)])

    def written(self, name: str) -> list[dict[str, Any]]:
        return [p.body for p in self.patches if p.name == name]

    async def patch_task_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        self.patches.append(Patch(namespace, name, copy.deepcopy(dict(patch))))
        body = self.objects.get((namespace, name))
        if body is None:
            return None
        self._version += 1
        body["status"] = merge_patch(body.get("status") or {}, patch)
        body["metadata"]["resourceVersion"] = str(self._version)
        return copy.deepcopy(body)

    async def post_task_event(
        self,
        task: Mapping[str, Any],
        *,
        key: str,
        type_: str,
        reason: str,
        message: str,
        instance: str,
        now: datetime,
    ) -> bool:
        if self.events_down > 0:
            self.events_down -= 1
            raise EventNotPosted("ConnectionRefusedError: the API is down")
        body = task_event(
            task, key=key, type_=type_, reason=reason, message=message, instance=instance,
            now=now,
        )  # fmt: skip
        name = body["metadata"]["name"]
        if name in self.events:
            return False
        self.events[name] = body
        return True

    def posted(self, name: str, reason: str) -> list[str]:
        """Messages of the events the reconciler posted itself about task ``name``."""
        return [
            e["message"]
            for e in self.events.values()
            if e["involvedObject"]["name"] == name and e["reason"] == reason
        ]

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        return self.secrets.get((namespace, name, key))

    async def configmap_value(self, namespace: str, name: str, key: str) -> str | None:
        return self.configmaps.get((namespace, name, key))


class Clock:
    """The reconciler's clock, moved by the test. It starts at the real time, because
    rkt-sim stamps pods with real start and finish times."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def catch_up(self) -> None:
        """Jump to the real time (after rkt-sim stamped an exit with it)."""
        self.now = max(self.now, datetime.now(UTC))
