"""Writing an RktTask's status: only when it changed, and remembering what was written.

``StatusWriter.write`` builds the whole status for a summary (``reconcile.status``), checks it
against the API model, sends the merge patch of what differs (nothing at all when nothing
differs) and queues an event when the phase, reason or message changed. The status returned
by the API server is kept per task with its resourceVersion: ``freshest`` prefers it over
the status of an object handed in by a watch that has not caught up with our own PATCH yet.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from rkt_operator import envrefs, errors
from rkt_operator.reconcile import status as c
from rkt_operator.reconcile.taskstate import Task

log = logging.getLogger(__name__)


class StatusApi(envrefs.ValueSource, Protocol):
    """The API calls the reconciler makes (``kubeapi.KubeApi``)."""

    async def patch_task_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> Mapping[str, Any] | None: ...

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
    ) -> bool: ...


@dataclass(frozen=True)
class Event:
    """A Kubernetes event about the task. The kopf handlers post it, unless ``posted``: the
    reconciler posted it itself, once, before the status write that records it (a
    ``Restarting`` event, see ``plan.restart_events_due``)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    posted: bool = False


@dataclass
class Outcome:
    """What one reconcile pass leaves for its caller: events, the error to map, writes."""

    events: list[Event] = field(default_factory=list)
    error: errors.RktTaskError | None = None
    requeue_after: float | None = None
    writes: int = 0


class StatusWriter:
    """Writes task status on change; remembers the last status written per task."""

    def __init__(self, *, api: StatusApi, node_name: str, clock: Callable[[], datetime]) -> None:
        self.api = api
        self.node_name = node_name
        self.now = clock
        self._written: dict[str, tuple[int, Mapping[str, Any]]] = {}

    def forget(self, uid: str) -> None:
        self._written.pop(uid, None)

    def freshest(self, task: Task) -> Mapping[str, Any]:
        """The object's status, or the one we wrote last if the object we were handed is
        older than our own write (the watch may lag behind our PATCH)."""
        cached = self._written.get(task.uid)
        if cached is None:
            return task.status
        try:
            seen = int(task.resource_version)
        except ValueError:
            return task.status
        written_rv, written_status = cached
        return written_status if seen < written_rv else task.status

    async def write(
        self,
        task: Task,
        current: Mapping[str, Any],
        summary: c.Summary,
        facts: c.PodFacts,
        out: Outcome,
        *,
        observe: bool = True,
    ) -> Mapping[str, Any]:
        """Write the status for ``summary`` if it differs from ``current``, and queue an
        event when the phase, reason or message changed. ``observe=False`` keeps observedGeneration
        (nothing was decided about the spec). Returns the status now in force."""
        generation = task.generation
        if not observe and isinstance(current.get("observedGeneration"), int):
            generation = current["observedGeneration"]
        desired = c.build_status(
            summary,
            facts,
            previous=current,
            generation=generation,
            now=self.now(),
            node_name=self.node_name,
        )
        c.validate(desired)
        patch = c.status_patch(current, desired)
        if not patch:
            return current
        # Which fields changed (names only: values may be long), to account for each write.
        log.debug("status write task=%s/%s fields=%s", task.namespace, task.name, sorted(patch))
        written = await self.api.patch_task_status(task.namespace, task.name, patch)
        out.writes += 1
        ready = c.condition(current, c.READY) or {}
        before = (current.get("phase"), ready.get("reason"), ready.get("message"))
        if before != (summary.phase, summary.reason, summary.message):
            warning = (
                summary.stalled
                or summary.reason in (c.CRASH_LOOP_BACK_OFF, c.PROBE_FAILED)
                or (summary.reconciling and summary.reason not in (c.STARTING, c.REPLACING))
            )
            out.events.append(
                Event("Warning" if warning else "Normal", summary.reason, summary.message)
            )
        if written is None:
            return desired  # the task is gone
        new_status = written.get("status")
        new_status = dict(new_status) if isinstance(new_status, Mapping) else desired
        meta = written.get("metadata")
        version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        with contextlib.suppress(ValueError):
            self._written[task.uid] = (int(str(version)), new_status)
        return new_status
