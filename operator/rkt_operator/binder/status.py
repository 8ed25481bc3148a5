"""The status the binder writes on a task it has not bound yet (pure).

An unbound task has no agent to report on it, so the binder does, in the same kstatus
vocabulary the agents use: ``Scheduled`` (kube-scheduler's PodScheduled), plus ``Ready=False``
and ``Reconciling=True`` while it waits for a node (kstatus: InProgress, never Current), or
``Stalled=True`` when its spec cannot be read (kstatus: Failed). Once bound, the agent of the
node writes Ready / Reconciling / Stalled itself and keeps ``Scheduled`` (a condition type it
does not own) as it is.

The binder writes this status *before* binding, guarded by the resourceVersion it read, so
that the first object the agent sees already says ``Scheduled=True``: the agent's own
condition list is built from that object and cannot write back a stale ``Scheduled``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rkt_operator.reconcile import status as c

SCHEDULED = "Scheduled"
REASON_SCHEDULED = "Scheduled"
REASON_UNSCHEDULABLE = "Unschedulable"
REASON_INVALID = c.INVALID_SPEC


@dataclass(frozen=True)
class Verdict:
    """What the binder says about one task."""

    scheduled: bool
    reason: str
    message: str
    invalid: bool = False


def _condition(
    kind: str,
    status: bool,
    verdict: Verdict,
    previous: Mapping[str, Any] | None,
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    text = c.TRUE if status else c.FALSE
    since = c.format_time(now)
    if previous is not None and previous.get("status") == text:
        since = str(previous.get("lastTransitionTime") or since)
    return {
        "type": kind,
        "status": text,
        "reason": verdict.reason,
        "message": verdict.message[: c.MAX_MESSAGE],
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def build(
    verdict: Verdict, current: Mapping[str, Any] | None, *, generation: int, now: datetime
) -> dict[str, Any]:
    """The status stanza for ``verdict`` (keys the binder sets; foreign conditions kept)."""
    current = current or {}
    by_type = {
        cond.get("type"): cond
        for cond in current.get("conditions") or ()
        if isinstance(cond, Mapping)
    }
    ours = {
        SCHEDULED: verdict.scheduled,
        c.READY: False,
        c.RECONCILING: not verdict.invalid,
        c.STALLED: verdict.invalid,
    }
    conditions = [
        _condition(kind, holds, verdict, by_type.get(kind), generation, now)
        for kind, holds in ours.items()
    ]
    conditions += [dict(cond) for kind, cond in by_type.items() if kind not in ours]
    return {
        "phase": c.FAILED if verdict.invalid else c.PENDING,
        "message": verdict.message[: c.MAX_MESSAGE],
        "conditions": conditions,
    }


def _essence(conditions: Sequence[Mapping[str, Any]] | None) -> set[tuple[Any, ...]]:
    return {
        (cond.get("type"), cond.get("status"), cond.get("reason"), cond.get("message"))
        for cond in conditions or ()
        if isinstance(cond, Mapping)
    }


def needs_write(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether ``desired`` says anything ``current`` does not (times aside)."""
    current = current or {}
    return (
        current.get("phase") != desired["phase"]
        or current.get("message") != desired["message"]
        or _essence(current.get("conditions")) != _essence(desired["conditions"])
    )


def scheduled_condition(status: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return c.condition(status, SCHEDULED)
