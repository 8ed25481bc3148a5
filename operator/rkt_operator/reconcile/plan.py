"""Pure decision of what to do with one task's pods (the kubelet's ``computePodActions``).

Inputs are plain values: the desired generation and restart policy, what the task's status
already records, the pods rkt reports for the task (``rkt.types.PodObservation``, the value
the executor reports, with the UUIDs the agent stopped or must stop for a failed liveness
probe), the current time and the restart back-off.
The output is a :class:`Decision`: the pods to stop or remove, whether to start one, and the
state the task is in, each with a stable reason, so that it can be logged and table-tested.

Invariants the decision keeps:

- never two live pods for one task: the newest live pod of the desired generation is kept,
  every other live pod is stopped and removed (``RemoveDuplicates``, ``ReplaceOutdated``);
- a pod is started only when no live pod of the desired generation is left;
- an exit is reported once; a terminal task (``Succeeded``/``Failed`` for this generation)
  is never started again, even after rkt's garbage collection removed its pod;
- a running pod whose liveness probe failed (``unhealthy``) is stopped, and its exit
  is decided in the same decision (a failure: back off or fail, per restartPolicy);
- a pod the agent stopped because its liveness probe failed (``killed``) exited
  in failure whatever its exit code, and so did an exit already reported as Failed or
  backing off (the status keeps that after the agent restarts);
- restarts follow the policy with exponential back-off (``initial * 2**step`` capped at
  ``maximum``); the step resets after a pod ran for :data:`BACKOFF_RESET_AFTER`, as the
  kubelet does;
- the restart count and the back-off step never go backwards: each pod carries the count
  and step it was started with (``PodObservation.stamp``), and a pod of the desired
  generation that carries more restarts than the status records raises the count (an
  agent killed between preparing a restarted pod and recording it lost nothing);
- the back-off is read from ``status.backoff`` (``Recorded.backoff``: the step and when the
  restart is due), never from a condition's reason, which any status write may replace;
- every restart has its ``Restarting`` event, at least once: ``restart_events_due`` names
  the restarts the status does not record as announced (``status.restartEventsPosted``);
- a start that failed for a cause that can heal (``StartFailure``, see :func:`start_failed`)
  is tried again with the same back-off, counted from its failures, and for ever: after
  the task's progress deadline the status says Stalled, the retries go on at the capped
  delay. A failed restart stays a restart: counted when its pod is finally prepared.

No processes, no clock, no Kubernetes here: the caller observes and applies.

Size: one decision function and its value types, kept together so that the invariants
above are read, and table-tested, in one place; the length is the decision's case analysis.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from rkt_operator.rkt.types import PodObservation

# A pod that ran at least this long before exiting resets the back-off (kubelet behaviour).
BACKOFF_RESET_AFTER = timedelta(minutes=10)


class RestartPolicy(enum.StrEnum):
    NEVER = "Never"
    ON_FAILURE = "OnFailure"
    ALWAYS = "Always"


class State(enum.StrEnum):
    """What the task is doing, as far as the pod goes (the status phase is derived from it)."""

    PENDING = "Pending"  # no pod yet, or one being prepared/launched
    RUNNING = "Running"
    BACKOFF = "BackOff"  # the pod exited and a restart is scheduled
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


TERMINAL_STATES = frozenset({State.SUCCEEDED, State.FAILED})


class Reason(enum.StrEnum):
    """Why an action was chosen; stable strings used in logs and events."""

    START = "Start"
    RESTART = "Restart"
    ADOPT_RUNNING = "AdoptRunning"
    ADOPT_PREPARED = "AdoptPrepared"
    REPLACE_OUTDATED = "ReplaceOutdated"
    REMOVE_DUPLICATES = "RemoveDuplicates"
    REMOVE_STALE = "RemoveStale"
    REPORT_EXIT = "ReportExit"
    RESTART_AFTER = "RestartAfter"
    POD_LOST = "PodLost"
    STOP_UNHEALTHY = "StopUnhealthy"
    RETRY_START_AFTER = "RetryStartAfter"  # a start failed; the next try waits its back-off
    WAIT = "Wait"


@dataclass(frozen=True)
class StartFailure:
    """Starts of the desired generation that failed in a row for a cause that can heal
    (``status.startFailure``): rkt failing or hanging, the image not in the store yet, a
    lock, a missing Secret. ``restart``: the failing start replaces an exited pod."""

    reason: str
    message: str
    attempts: int
    since: datetime
    last: datetime
    restart: bool = False

    def retry_at(self, backoff: Backoff) -> datetime:
        """When the next try is due: the restart back-off, one step per failure."""
        return self.last + timedelta(seconds=backoff.delay(self.attempts - 1))

    def past_deadline(self, now: datetime, deadline_seconds: float) -> bool:
        """Whether the starts have failed for the task's whole progress deadline."""
        return now - self.since >= timedelta(seconds=deadline_seconds)


def start_failed(
    previous: StartFailure | None, *, reason: str, message: str, now: datetime, restart: bool
) -> StartFailure:
    """The record after one more failed start (the first of a streak starts it)."""
    if previous is None:
        return StartFailure(reason, message, attempts=1, since=now, last=now, restart=restart)
    return replace(
        previous,
        reason=reason,
        message=message,
        attempts=previous.attempts + 1,
        last=now,
        restart=restart,
    )


@dataclass(frozen=True)
class BackoffWait:
    """``status.backoff``: the pod the status names exited, and is started again at
    ``restart_at`` after the delay of back-off ``step``."""

    step: int
    restart_at: datetime


@dataclass(frozen=True)
class Recorded:
    """What the task's status already says (read back, so the decision survives restarts)."""

    state: State | None = None
    generation: int | None = None  # status.observedGeneration
    uuid: str | None = None
    exit_code: int | None = None
    finished_at: datetime | None = None  # set once the exit of ``uuid`` was reported
    restarts: int = 0
    # A pod of an older generation that still stands for the desired one, because the spec
    # change since its launch only touched fields applied live (killTimeoutSeconds, probes).
    accepted_uuid: str | None = None
    start_failure: StartFailure | None = None  # status.startFailure
    backoff: BackoffWait | None = None  # status.backoff (state BACKOFF)


@dataclass(frozen=True)
class Backoff:
    initial_seconds: float
    max_seconds: float
    step: int = 0  # restarts already made in the current back-off window

    def delay(self, step: int) -> float:
        if step >= 64:
            return self.max_seconds
        return float(min(self.initial_seconds * 2.0**step, self.max_seconds))


@dataclass(frozen=True)
class StopPod:
    """Stop gracefully (the kill timeout), then remove."""

    uuid: str
    reason: Reason


@dataclass(frozen=True)
class RemovePod:
    """Remove a pod that is no longer live."""

    uuid: str
    reason: Reason


@dataclass(frozen=True)
class StartPod:
    """Start (or adopt and launch a prepared) pod of the desired generation."""

    reason: Reason
    restart: bool = False


Action = StopPod | RemovePod | StartPod


@dataclass(frozen=True)
class Decision:
    """The plan for one reconcile pass and the state the status should show afterwards."""

    reason: Reason
    state: State
    actions: tuple[Action, ...] = ()
    pod_uuid: str | None = None  # the pod the status should name
    exit_code: int | None = None
    finished_at: datetime | None = None
    restarts: int = 0
    backoff_step: int = 0
    requeue_after: float | None = None  # seconds until something is due (restart back-off)
    start_failure: StartFailure | None = None  # failed starts being retried (kept in status)
    restart_at: datetime | None = None  # state BACKOFF: when the restart is due

    @property
    def start(self) -> StartPod | None:
        return next((a for a in self.actions if isinstance(a, StartPod)), None)

    @property
    def removals(self) -> tuple[StopPod | RemovePod, ...]:
        return tuple(a for a in self.actions if not isinstance(a, StartPod))


def _newest_first(pods: Sequence[PodObservation]) -> list[PodObservation]:
    epoch = datetime.min
    return sorted(
        pods,
        key=lambda p: (
            (p.created_at or p.started_at or epoch).replace(tzinfo=None),
            p.uuid,
        ),
        reverse=True,
    )


def _restart_wanted(policy: RestartPolicy, exit_code: int | None, *, failure: bool) -> bool:
    if policy is RestartPolicy.ALWAYS:
        return True
    if policy is RestartPolicy.ON_FAILURE:
        return failure or exit_code != 0
    return False


def _ran_long(started_at: datetime | None, finished_at: datetime | None) -> bool:
    if started_at is None or finished_at is None:
        return False
    return finished_at - started_at >= BACKOFF_RESET_AFTER


def decide(
    *,
    generation: int,
    policy: RestartPolicy,
    recorded: Recorded,
    pods: Sequence[PodObservation],
    now: datetime,
    backoff: Backoff,
    killed: Collection[str] = (),
    unhealthy: Collection[str] = (),
) -> Decision:
    """Decide what to do with the pods of one task. Pure and deterministic. ``killed``: the
    pods the agent stopped because their liveness probe failed; ``unhealthy``: running pods
    whose liveness probe failed (to be stopped)."""
    ordered = _newest_first(pods)
    recorded, backoff = _counted(generation, recorded, ordered, backoff)
    current = [p for p in ordered if p.generation == generation or p.uuid == recorded.accepted_uuid]
    outdated = [p for p in ordered if p not in current]
    cleanup: list[StopPod | RemovePod] = []

    # 1. Pods of another generation go: stop the live ones, remove the rest.
    for pod in outdated:
        if pod.live:
            cleanup.append(StopPod(pod.uuid, Reason.REPLACE_OUTDATED))
        else:
            cleanup.append(RemovePod(pod.uuid, Reason.REPLACE_OUTDATED))
    # 2. Debris of interrupted prepares goes.
    cleanup.extend(RemovePod(p.uuid, Reason.REMOVE_STALE) for p in current if p.transient)
    live = [p for p in current if p.live]
    finished = [p for p in current if p.finished]
    replacing = any(p.live for p in outdated)

    # 3. Never two pods: keep the newest live one, stop the others.
    if live:
        keep = live[0]
        cleanup.extend(StopPod(p.uuid, Reason.REMOVE_DUPLICATES) for p in live[1:])
        cleanup.extend(RemovePod(p.uuid, Reason.REMOVE_STALE) for p in finished)
        base = Decision(
            reason=Reason.WAIT,
            state=State.RUNNING,
            pod_uuid=keep.uuid,
            restarts=recorded.restarts,
            backoff_step=backoff.step,
            exit_code=recorded.exit_code,
            finished_at=None,
        )
        if keep.running and keep.uuid in unhealthy:
            # The liveness probe failed: stop the pod, and decide its exit now (a failure;
            # the exit code and time are the stop's, filled in by ``exited``).
            return _after_exit(
                policy=policy,
                recorded=recorded,
                now=now,
                backoff=backoff,
                cleanup=[*cleanup, StopPod(keep.uuid, Reason.STOP_UNHEALTHY)],
                uuid=keep.uuid,
                exit_code=None,
                finished_at=now,
                reported=False,
                ran_long=_ran_long(keep.started_at, now),
                lost=False,
                present=True,
                failure=True,
            )
        if keep.running:
            known = recorded.uuid == keep.uuid and recorded.state is State.RUNNING
            if not known:
                reason = Reason.ADOPT_RUNNING
            elif cleanup:
                stops = [a for a in cleanup if isinstance(a, StopPod)]
                reason = (stops or cleanup)[0].reason
            else:
                reason = Reason.WAIT
            return replace(base, reason=reason, actions=tuple(cleanup))
        failure = _failure_of(recorded, generation)
        wait = _retry_wait(failure, now, backoff)
        if wait is not None:  # its launch failed: the next try waits its back-off
            return replace(
                base,
                reason=Reason.RETRY_START_AFTER,
                state=State.PENDING,
                actions=tuple(cleanup),
                requeue_after=wait,
                start_failure=failure,
            )
        start = StartPod(Reason.ADOPT_PREPARED)
        return replace(
            base,
            reason=Reason.ADOPT_PREPARED,
            state=State.PENDING,
            actions=(*cleanup, start),
            start_failure=failure,
        )

    # 4. The newest finished pod of this generation carries the task's latest exit.
    if finished:
        last = finished[0]
        cleanup.extend(RemovePod(p.uuid, Reason.REMOVE_STALE) for p in finished[1:])
        reported = (
            recorded.uuid == last.uuid
            and recorded.finished_at is not None
            and recorded.state in (*TERMINAL_STATES, State.BACKOFF)
        )
        finished_at = recorded.finished_at if reported else (last.finished_at or now)
        return _after_exit(
            policy=policy,
            recorded=recorded,
            now=now,
            backoff=backoff,
            cleanup=cleanup,
            uuid=last.uuid,
            exit_code=last.exit_code if not reported else recorded.exit_code,
            finished_at=finished_at or now,
            reported=reported,
            ran_long=_ran_long(last.started_at, last.finished_at),
            lost=False,
            present=True,
            failure=last.uuid in killed
            or (reported and recorded.state in (State.FAILED, State.BACKOFF)),
        )

    # 5. No pod of this generation on the node.
    same_generation = recorded.generation == generation
    if same_generation and recorded.state in TERMINAL_STATES:
        return Decision(
            reason=Reason.WAIT,
            state=recorded.state,
            actions=tuple(cleanup),
            pod_uuid=recorded.uuid,
            exit_code=recorded.exit_code,
            finished_at=recorded.finished_at,
            restarts=recorded.restarts,
            backoff_step=backoff.step,
        )
    if same_generation and recorded.uuid and recorded.state is State.BACKOFF:
        return _after_exit(
            policy=policy,
            recorded=recorded,
            now=now,
            backoff=backoff,
            cleanup=cleanup,
            uuid=recorded.uuid,
            exit_code=recorded.exit_code,
            finished_at=recorded.finished_at or now,
            reported=True,
            ran_long=False,
            lost=False,
            present=False,
            failure=True,  # a restart was decided: the exit was a failure
        )
    if same_generation and recorded.uuid and recorded.state is State.RUNNING and not replacing:
        # The pod the status names vanished from rkt: count it as a failed exit.
        return _after_exit(
            policy=policy,
            recorded=recorded,
            now=now,
            backoff=backoff,
            cleanup=cleanup,
            uuid=recorded.uuid,
            exit_code=None,
            finished_at=now,
            reported=False,
            ran_long=False,
            lost=True,
            present=False,
            failure=True,
        )
    failure = _failure_of(recorded, generation)
    if failure is not None:
        wait = _retry_wait(failure, now, backoff)
        if wait is not None:
            return Decision(
                reason=Reason.RETRY_START_AFTER,
                state=State.PENDING,
                requeue_after=wait,
                start_failure=failure,
                actions=tuple(cleanup),
                pod_uuid=recorded.uuid,
                exit_code=recorded.exit_code,
                finished_at=recorded.finished_at,
                restarts=recorded.restarts,
                backoff_step=backoff.step,
            )
        if failure.restart:  # the restart whose start failed, tried again
            return Decision(
                reason=Reason.RESTART,
                state=State.PENDING,
                actions=(*cleanup, StartPod(Reason.RESTART, restart=True)),
                exit_code=recorded.exit_code,
                finished_at=recorded.finished_at,
                restarts=recorded.restarts + 1,
                backoff_step=backoff.step + 1,
                start_failure=failure,
            )
    reason = Reason.REPLACE_OUTDATED if outdated else Reason.START
    new_generation = not same_generation
    return Decision(
        reason=reason,
        state=State.PENDING,
        actions=(*cleanup, StartPod(reason)),
        restarts=0 if new_generation else recorded.restarts,
        backoff_step=0 if new_generation else backoff.step,
        start_failure=failure,
    )


def _failure_of(recorded: Recorded, generation: int) -> StartFailure | None:
    """The failed starts the status records for ``generation`` (none for another)."""
    return recorded.start_failure if recorded.generation == generation else None


def _counted(
    generation: int, recorded: Recorded, ordered: Sequence[PodObservation], backoff: Backoff
) -> tuple[Recorded, Backoff]:
    """The restart count and back-off step, never behind what the task's pods carry: each
    pod is stamped with the counts it was started with, before the status records it."""
    stamped = [p.stamp for p in ordered if p.generation == generation and p.stamp is not None]
    if not stamped:
        return recorded, backoff
    restarts = max(recorded.restarts, *(s.restarts for s in stamped))
    return replace(recorded, restarts=restarts), replace(backoff, step=stamped[0].backoff_step)


def _retry_wait(failure: StartFailure | None, now: datetime, backoff: Backoff) -> float | None:
    """Seconds until the next try of a failed start is due; None when it is (or none
    failed)."""
    if failure is None:
        return None
    due = failure.retry_at(backoff)
    return (due - now).total_seconds() if now < due else None


def _after_exit(
    *,
    policy: RestartPolicy,
    recorded: Recorded,
    now: datetime,
    backoff: Backoff,
    cleanup: list[StopPod | RemovePod],
    uuid: str,
    exit_code: int | None,
    finished_at: datetime,
    reported: bool,
    ran_long: bool,
    lost: bool,
    present: bool,
    failure: bool,
) -> Decision:
    """The pod ``uuid`` (of the desired generation) has exited: report, back off or restart.
    ``failure``: the exit counts as a failure whatever its code."""
    report_reason = Reason.POD_LOST if lost else Reason.REPORT_EXIT
    if not _restart_wanted(policy, exit_code, failure=failure):
        state = State.SUCCEEDED if exit_code == 0 and not failure else State.FAILED
        return Decision(
            reason=Reason.WAIT if reported else report_reason,
            state=state,
            actions=tuple(cleanup),
            pod_uuid=uuid,
            exit_code=exit_code,
            finished_at=finished_at,
            restarts=recorded.restarts,
            backoff_step=backoff.step,
        )
    waiting = recorded.backoff if reported else None
    if waiting is not None:  # the back-off already decided (status.backoff) stands
        step, due = waiting.step, waiting.restart_at
    else:
        step = 0 if ran_long else backoff.step
        due = finished_at + timedelta(seconds=backoff.delay(step))
    if now >= due:
        actions: list[Action] = [*cleanup]
        if present:
            actions.append(RemovePod(uuid, Reason.RESTART))
        actions.append(StartPod(Reason.RESTART, restart=True))
        return Decision(
            reason=Reason.RESTART,
            state=State.PENDING,
            actions=tuple(actions),
            pod_uuid=None,
            exit_code=exit_code,
            finished_at=finished_at,
            restarts=recorded.restarts + 1,
            backoff_step=step + 1,
        )
    return Decision(
        reason=Reason.RESTART_AFTER if reported else report_reason,
        state=State.BACKOFF,
        actions=tuple(cleanup),
        pod_uuid=uuid,
        exit_code=exit_code,
        finished_at=finished_at,
        restarts=recorded.restarts,
        backoff_step=step,
        requeue_after=(due - now).total_seconds(),
        restart_at=due,
    )


def restart_events_due(restarts: int, *, recorded_restarts: int, posted: int | None) -> range:
    """The restarts (numbered from 1) whose ``Restarting`` event is still to be posted, once
    the status is to say ``restarts``: those above ``status.restartEventsPosted`` (``posted``;
    absent: every restart the status records, ``recorded_restarts``, was announced by an
    older agent). Posted before the status write that records them, and recorded by it; a
    post that failed is tried again by the next pass. Empty on the normal path once the
    restart's own pass posted it."""
    announced = recorded_restarts if posted is None else posted
    return range(min(announced, restarts) + 1, restarts + 1)


def restart_to_count(decision: Decision, recorded_restarts: int) -> bool:
    """Whether a failed start of ``decision`` is a restart the status has not counted yet:
    a restart (made or tried again), or a restarted pod adopted from its stamp, whose count
    is above the status's. Its failure record keeps it to be counted when a start succeeds."""
    return decision.start is not None and decision.restarts > recorded_restarts


def started(decision: Decision, *, uuid: str, running: bool, recorded: Recorded) -> Decision:
    """What the task is once the decided start was applied: pod ``uuid`` runs, or (not
    running yet, or already exited) the start stays under way and the next pass looks at the
    pod. The restart count and back-off step are the decision's; the exit code is what the
    status recorded before the start."""
    if not running:
        return replace(decision, state=State.PENDING, pod_uuid=uuid, actions=())
    return replace(
        decision,
        reason=Reason.ADOPT_RUNNING,
        state=State.RUNNING,
        actions=(),
        pod_uuid=uuid,
        exit_code=recorded.exit_code,
        finished_at=None,
        requeue_after=None,
    )


def exited(decision: Decision, *, exit_code: int | None, finished_at: datetime | None) -> Decision:
    """The decided exit of a pod the pass stopped (``StopUnhealthy``), with the exit code and
    time rkt reported once it had stopped."""
    return replace(decision, exit_code=exit_code, finished_at=finished_at or decision.finished_at)
