"""Pure glue between an RktTask object, the pod decision and the status builders.

Reads what the decision needs back from the object (``Task``, ``recorded_from``), holds what
one pass observed and applied (``Observed``, ``Applied``), and turns a ``plan.Decision`` plus
the observed pod into the ``status.Summary`` and ``status.PodFacts`` the status is built
from. No I/O and no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from rkt_operator.errors import SpecError
from rkt_operator.model.spec import RktTaskSpec, validation_problems
from rkt_operator.reconcile import plan
from rkt_operator.reconcile import status as c
from rkt_operator.reconcile.probeplan import Verdict
from rkt_operator.rkt.types import PodObservation, TaskIdentity

# Spec fields a running pod picks up without a restart (killTimeoutSeconds is only read
# when the agent stops the pod; the probes are run by the agent from outside; logs goes to
# the pod's supervisor, as Nomad's Update did).
LIVE_FIELDS = frozenset(
    {"killTimeoutSeconds", "readinessProbe", "livenessProbe", "logs", "progressDeadlineSeconds"}
)


@dataclass(frozen=True)
class Task:
    """The parts of an RktTask object the agent works with."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    resource_version: str
    body: Mapping[str, Any]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Task:
        meta = body.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            generation=int(meta.get("generation") or 1),
            spec=dict(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
            resource_version=str(meta.get("resourceVersion") or ""),
            body=body,
        )

    @property
    def identity(self) -> TaskIdentity:
        return TaskIdentity(self.namespace, self.name, self.uid, self.generation)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def raw_kill_timeout(self) -> float:
        """spec.killTimeoutSeconds even when the spec as a whole is invalid (default 5)."""
        value = self.spec.get("killTimeoutSeconds", 5)
        return float(value) if isinstance(value, int | float) else 5.0


def parse_spec(task: Task) -> RktTaskSpec:
    """The validated spec; ``SpecError`` naming the first offending field otherwise."""
    try:
        return RktTaskSpec.model_validate(dict(task.spec))
    except ValidationError as exc:
        problems = validation_problems(exc)
        field, message = problems[0] if problems else ("spec", str(exc))
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise SpecError(f"{field}: {message}{more}", field=field) from None


def live_only_change(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """Whether two specs differ only in fields applied without a restart."""
    if old is None or new is None:
        return False

    def launch_relevant(spec: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in spec.items() if k not in LIVE_FIELDS}

    return old != new and launch_relevant(old) == launch_relevant(new)


@dataclass(frozen=True)
class Observed:
    """Everything one reconcile pass observed, read once before it decides: what the status
    records, the restart back-off, the task's pods as rkt reports them, and the liveness
    verdicts the agent holds about them."""

    recorded: plan.Recorded
    backoff: plan.Backoff
    pods: tuple[PodObservation, ...]
    # Pods the agent stopped for a failed liveness probe, and running pods whose liveness
    # probe failed (to be stopped), by UUID.
    killed: Mapping[str, Verdict]
    unhealthy: Mapping[str, Verdict]

    def pod(self, uuid: str | None) -> PodObservation | None:
        return pod_named(self.pods, uuid)


@dataclass(frozen=True)
class Applied:
    """What applying a decision did, as the executor reported it: the pods removed, the pod
    started (its observation once launched, with the port map discovery found) and the pod
    stopped for a failed liveness probe (as rkt showed it after the stop)."""

    removed: tuple[str, ...] = ()
    started: PodObservation | None = None
    stopped: PodObservation | None = None

    def pods_left(self, observed: Observed) -> list[PodObservation]:
        """The task's pods after the apply: the observed ones minus the removed, plus the
        started one (in the state the executor last saw)."""
        changed = {p.uuid: p for p in (self.started, self.stopped) if p is not None}
        left = [changed.pop(p.uuid, p) for p in observed.pods if p.uuid not in self.removed]
        return [*changed.values(), *left]


def reported(
    decision: plan.Decision, observed: Observed, applied: Applied
) -> tuple[plan.Decision, PodObservation | None]:
    """The decision as applied, and the pod the status names: a start leaves the started
    pod running (or still under way); a stop for a failed liveness probe fills in the exit
    rkt reported. Nothing is decided again."""
    if applied.started is not None:
        pod = applied.started
        done = plan.started(
            decision, uuid=pod.uuid, running=pod.running, recorded=observed.recorded
        )
        return done, pod
    if applied.stopped is not None and applied.stopped.uuid == decision.pod_uuid:
        pod = applied.stopped
        return plan.exited(decision, exit_code=pod.exit_code, finished_at=pod.finished_at), pod
    return decision, observed.pod(decision.pod_uuid)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def recorded_from(status: Mapping[str, Any], *, accepted_uuid: str | None) -> plan.Recorded:
    """What the status says, in the decision's terms: the state its phase and conditions
    mean, its observedGeneration, and the pod facts ``facts_from_status`` reads."""
    phase = status.get("phase")
    facts = facts_from_status(status)
    state: plan.State | None
    if phase == c.RUNNING:
        state = plan.State.RUNNING
    elif phase == c.SUCCEEDED:
        state = plan.State.SUCCEEDED
    elif phase == c.FAILED:
        state = plan.State.FAILED
    elif phase == c.PENDING and facts.backoff is not None:
        # status.backoff, not the conditions' reason: a write held back by an error (say
        # DependencyMissing) may replace the reason, never this field.
        state = plan.State.BACKOFF
    elif phase in (c.PENDING, c.PREPARING):
        state = plan.State.PENDING
    else:
        state = None
    failure = facts.start_failure
    backoff = facts.backoff
    return plan.Recorded(
        state=state,
        generation=_int(status.get("observedGeneration")),
        uuid=facts.uuid or None,
        exit_code=facts.exit_code,
        finished_at=facts.finished_at,
        restarts=facts.restarts,
        accepted_uuid=accepted_uuid,
        start_failure=plan.StartFailure(
            failure.reason,
            failure.message,
            attempts=failure.attempts,
            since=failure.since,
            last=failure.last,
            restart=failure.restart,
        )
        if failure
        else None,
        backoff=plan.BackoffWait(backoff.step, backoff.restart_at) if backoff else None,
    )


def facts_from_status(status: Mapping[str, Any]) -> c.PodFacts:
    """The pod facts a status already holds (kept while the agent waits or retries). The
    one reader of the status's pod fields: ``recorded_from`` builds on it."""
    uuid = status.get("uuid")
    ip = status.get("ip")
    port_map = status.get("portMap")
    ports = status.get("ports")
    return c.PodFacts(
        uuid=uuid if isinstance(uuid, str) else None,
        ip=ip if isinstance(ip, str) else None,
        port_map=port_map if isinstance(port_map, Mapping) else None,
        ports=ports if isinstance(ports, list) else None,
        started_at=c.parse_time(status.get("startedAt")),
        finished_at=c.parse_time(status.get("finishedAt")),
        exit_code=_int(status.get("exitCode")),
        restarts=_int(status.get("restarts")) or 0,
        stop_signal=_stop_signal(status.get("stopSignal")),
        start_failure=_start_failure(status.get("startFailure")),
        restart_events_posted=_int(status.get("restartEventsPosted")),
        backoff=_backoff(status.get("backoff")),
    )


def _backoff(value: object) -> c.BackoffFacts | None:
    """``status.backoff`` read back (None when absent or not in the shape written)."""
    if not isinstance(value, Mapping):
        return None
    step, restart_at = _int(value.get("step")), c.parse_time(value.get("restartAt"))
    if step is None or step < 0 or restart_at is None:
        return None
    return c.BackoffFacts(step=step, restart_at=restart_at)


def _start_failure(value: object) -> c.StartFailureFacts | None:
    """``status.startFailure`` read back (None when absent or not in the shape written)."""
    if not isinstance(value, Mapping):
        return None
    reason, message = value.get("reason"), value.get("message")
    attempts = _int(value.get("attempts"))
    since, last = c.parse_time(value.get("since")), c.parse_time(value.get("last"))
    if not isinstance(reason, str) or attempts is None or since is None or last is None:
        return None
    return c.StartFailureFacts(
        reason=reason,
        message=message if isinstance(message, str) else "",
        attempts=attempts,
        since=since,
        last=last,
        restart=value.get("restart") is True,
    )


def start_failing(
    failure: plan.StartFailure,
    *,
    spec: RktTaskSpec,
    backoff: plan.Backoff,
    now: datetime,
) -> tuple[c.Summary, c.StartFailureFacts]:
    """The summary of starts failing for a cause that can heal, and what the status keeps
    of them: Reconciling with the cause and the next try, or Stalled once they have failed
    for the task's progress deadline."""
    facts = c.StartFailureFacts(
        reason=failure.reason,
        message=failure.message,
        attempts=failure.attempts,
        since=failure.since,
        last=failure.last,
        restart=failure.restart,
    )
    deadline = spec.progress_deadline_seconds
    summary = c.start_failing(
        facts,
        retry_at=failure.retry_at(backoff),
        stalled=failure.past_deadline(now, deadline),
        deadline_seconds=deadline,
    )
    return summary, facts


def restart_message(number: int, *, pod_uuid: str | None, exit_code: int | None, late: bool) -> str:
    """The ``Restarting`` event of restart ``number``: the exit that caused it when the pass
    that made it announces it; ``late`` when a later pass does (the agent died or the API was
    down in between: the restart was read back from the pod's stamp or the status)."""
    exited = f"the pod exited with code {exit_code}; " if exit_code is not None else ""
    text = f"{exited}starting the pod again (restart {number})"
    if pod_uuid:
        text += f": pod {pod_uuid}"
    if late:
        text += "; announced late (the agent or the API was down when it was made)"
    return text


def _stop_signal(value: object) -> str | None:
    return value if isinstance(value, str) and value in ("SIGTERM", "SIGKILL") else None


def port_entries(spec: RktTaskSpec, port_map: Mapping[str, int]) -> list[dict[str, Any]]:
    """``status.ports``: each declared port with its container port (from the image
    manifest, when known) and its host binding."""
    host_network = spec.net == ["host"]
    entries: list[dict[str, Any]] = []
    for port in spec.ports:
        entry: dict[str, Any] = {"name": port.name, "protocol": port.protocol}
        if port.name in port_map:
            entry["containerPort"] = port_map[port.name]
        if port.host_port is not None and not host_network:
            entry["hostPort"] = port.host_port
            if port.host_ip:
                entry["hostIP"] = port.host_ip
        entries.append(entry)
    return entries


def describe(
    decision: plan.Decision,
    *,
    spec: RktTaskSpec,
    pod: PodObservation | None,
    previous: Mapping[str, Any],
    backoff: plan.Backoff,
    fresh_port_map: Mapping[str, int] | None = None,
    readiness: Verdict | None = None,
    killed: Verdict | None = None,
    now: datetime | None = None,
) -> tuple[c.Summary, c.PodFacts]:
    """The status summary and pod facts for a decision. ``pod`` is the observation of the
    pod the decision names (if rkt still knows it); ``fresh_port_map`` comes from a start.
    ``readiness``: the verdict of the pod's readiness probe, None without one; ``killed``:
    the failed liveness verdict the agent stopped the named pod for."""
    before = facts_from_status(previous)
    same_pod = before.uuid is not None and before.uuid == decision.pod_uuid
    kept = before if same_pod else c.PodFacts()
    # The start the status recorded for this pod stays: real rkt shows a pod's address
    # before stage1 writes the pid its start time comes from, so a pod can first be reported
    # Running without it; the time the agent first saw it running stands in, and a later
    # pass does not rewrite it (one status write per start, not two).
    started_at = kept.started_at or (pod.started_at if pod else None)
    base = c.PodFacts(uuid=decision.pod_uuid, restarts=decision.restarts)
    state = decision.state
    if state is plan.State.RUNNING and decision.pod_uuid:
        if started_at is None and pod is not None and pod.running:
            started_at = now
        port_map = dict(fresh_port_map or (pod.port_map if pod else {}) or kept.port_map or {})
        facts = replace(
            base,
            ip=(pod.ip if pod else None) or kept.ip,
            port_map=port_map,
            ports=port_entries(spec, port_map),
            started_at=started_at,
            exit_code=decision.exit_code,
        )
        if readiness is None or readiness.ok is True:
            return c.running(decision.pod_uuid, facts.ip), facts
        detail = readiness.detail if readiness.ok is False else None
        return c.not_ready(decision.pod_uuid, facts.ip, detail), facts
    liveness = (killed.failures, killed.detail) if killed else None
    if state in (plan.State.SUCCEEDED, plan.State.FAILED, plan.State.BACKOFF):
        summary, facts = _ended(decision, pod, previous, kept, base, started_at, backoff, liveness)
        if facts.stop_signal:
            summary = c.stopped_by_agent(summary, facts.stop_signal, facts.exit_code)
        return summary, facts
    failure = decision.start_failure
    if decision.reason is plan.Reason.RETRY_START_AFTER and failure is not None:
        # A start failed: waiting for its back-off, keeping what the status said of the
        # last pod (a failed restart is still a restart of that pod).
        summary, recorded = start_failing(
            failure, spec=spec, backoff=backoff, now=now or failure.last
        )
        facts = replace(
            kept,
            uuid=decision.pod_uuid,
            restarts=decision.restarts,
            exit_code=decision.exit_code,
            finished_at=decision.finished_at,
            start_failure=recorded,
            backoff=None,
        )
        return summary, facts
    # Pending: a start is under way (or has to be retried).
    facts = replace(base, exit_code=decision.exit_code)
    return c.preparing(decision.pod_uuid), facts


def _ended(
    decision: plan.Decision,
    pod: PodObservation | None,
    previous: Mapping[str, Any],
    kept: c.PodFacts,
    base: c.PodFacts,
    started_at: datetime | None,
    backoff: plan.Backoff,
    liveness: tuple[int, str] | None,
) -> tuple[c.Summary, c.PodFacts]:
    """Summary and facts of a pod that ended (Succeeded, Failed, or waiting to restart)."""
    state = decision.state
    same_pod = kept.uuid is not None and kept.uuid == decision.pod_uuid
    # The address the pod had stays in status after it ended, as a Pod's podIP does.
    facts = replace(
        base,
        ip=(pod.ip if pod else None) or kept.ip,
        started_at=started_at,
        finished_at=decision.finished_at,
        exit_code=decision.exit_code,
        stop_signal=(pod.stop_signal if pod else None) or kept.stop_signal,
    )
    if state is plan.State.SUCCEEDED:
        return c.succeeded(decision.pod_uuid), facts
    if state is plan.State.FAILED:
        lost = decision.reason is plan.Reason.POD_LOST or (
            decision.reason is plan.Reason.WAIT
            and (c.condition(previous, c.STALLED) or {}).get("reason") == c.POD_LOST
        )
        if liveness is None and same_pod and _stopped_for_liveness(previous):
            # Said before the agent restarted (the probe's detail is gone): keep it.
            summary = c.failed(decision.pod_uuid, decision.exit_code)
            message = str(previous.get("message") or summary.message)
            return replace(summary, reason=c.LIVENESS_PROBE_FAILED, message=message), facts
        summary = c.failed(decision.pod_uuid, decision.exit_code, lost=lost, liveness=liveness)
        return summary, facts
    delay = backoff.delay(decision.backoff_step)
    summary = c.backing_off(decision.exit_code, delay, decision.restarts, liveness=liveness)
    restart_at = decision.restart_at
    if restart_at is None and decision.finished_at is not None:
        restart_at = decision.finished_at + timedelta(seconds=delay)
    if restart_at is None:
        return summary, facts
    return summary, replace(facts, backoff=c.BackoffFacts(decision.backoff_step, restart_at))


def _stopped_for_liveness(status: Mapping[str, Any]) -> bool:
    return (c.condition(status, c.STALLED) or {}).get("reason") == c.LIVENESS_PROBE_FAILED


def pod_named(pods: Sequence[PodObservation], uuid: str | None) -> PodObservation | None:
    """The pod with this UUID among ``pods`` (None for no UUID or no such pod)."""
    return next((p for p in pods if p.uuid == uuid), None) if uuid else None
