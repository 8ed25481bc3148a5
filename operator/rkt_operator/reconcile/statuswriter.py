"""Writing an RktTask's status: only when it changed, and remembering what was written.

``StatusWriter.write`` builds the whole status for a summary (``reconcile.status``), checks it
against the API model, sends the merge patch of what differs (nothing at all when nothing
differs) and queues an event when the phase, reason or message changed. The status returned
by the API server is kept per task with its resourceVersion: ``freshest`` prefers it over
the status of an object handed in by a watch that has not caught up with our own PATCH yet.

``StatusWriter.defer`` builds a status without sending it (a new generation's
acknowledgement): the next ``write`` of the same pass sends both in one PATCH, its diff taken
against the status on the server, and ``flush`` sends it alone if no write followed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from rkt_operator import envrefs, errors
from rkt_operator.reconcile import status as c
from rkt_operator.reconcile.taskstate import Task


class StatusApi(envrefs.ValueSource, Protocol):
    """The API calls the reconciler makes (``kubeapi.KubeApi``)."""

    async def patch_task_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class Event:
    """A Kubernetes event to post about the task (the kopf handlers post it)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


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
        # uid -> (the status on the server, the deferred status built on it, its summary)
        self._deferred: dict[str, tuple[Mapping[str, Any], Mapping[str, Any], c.Summary]] = {}

    def forget(self, uid: str) -> None:
        self._written.pop(uid, None)
        self._deferred.pop(uid, None)

    def defer(
        self, task: Task, current: Mapping[str, Any], summary: c.Summary, facts: c.PodFacts
    ) -> Mapping[str, Any]:
        """The status for ``summary``, not written yet: the next ``write`` for the task (or
        ``flush``) sends it along. Returns it, as the status in force for the rest of the
        pass. The caller holds the task's lock until it has flushed."""
        desired = c.build_status(
            summary,
            facts,
            previous=current,
            generation=task.generation,
            now=self.now(),
            node_name=self.node_name,
        )
        c.validate(desired)
        if not c.status_patch(current, desired):
            return current
        server = self._deferred[task.uid][0] if task.uid in self._deferred else current
        self._deferred[task.uid] = (server, desired, summary)
        return desired

    async def flush(self, task: Task, out: Outcome) -> None:
        """Send a deferred status that no write has carried yet."""
        pending = self._deferred.pop(task.uid, None)
        if pending is None:
            return
        server, desired, summary = pending
        await self._send(task, server, desired, summary, out)

    def drop_deferred(self, task: Task) -> None:
        """Forget a deferred status (the pass failed before it could be sent: the next pass
        builds it again)."""
        self._deferred.pop(task.uid, None)

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
        deferred = self._deferred.pop(task.uid, None)
        if deferred is not None:
            # The deferred status rides along: diff against what the server holds.
            current = deferred[0]
        return await self._send(task, current, desired, summary, out)

    async def _send(
        self,
        task: Task,
        current: Mapping[str, Any],
        desired: Mapping[str, Any],
        summary: c.Summary,
        out: Outcome,
    ) -> Mapping[str, Any]:
        """PATCH what differs between ``current`` (the server's) and ``desired``; queue an
        event when the phase, reason or message changed."""
        patch = c.status_patch(current, desired)
        if not patch:
            return current
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
