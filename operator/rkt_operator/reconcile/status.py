"""Pure builders of an RktTask's status: the kstatus conditions, the phase and the merge patch.

Three conditions are always present (kopf-and-gitops.md §5), so Flux (kstatus), Argo CD (the
chart's health.lua) and people agree on the task's health:

========================  =========  ======  ===========  =======
situation                 phase      Ready   Reconciling  Stalled
========================  =========  ======  ===========  =======
accepted / waiting        Pending    False   True         False
preparing / launching     Preparing  False   True         False
running                   Running    True    False        False
running, not ready (1)    Running    False   False        False
succeeded (batch done)    Succeeded  True    False        False
failed, no restart        Failed     False   False        True
backing off to restart    Pending    False   True         False
waiting for a dependency  Pending    False   True         False
invalid spec / terminal   Failed     False   False        True
start failing, retrying   Pending    False   True         False
 ... past its deadline    Pending    False   False        True
========================  =========  ======  ===========  =======

A start that fails for a cause that can heal (rkt failing or hanging, an image not in the
store yet, a lock, a missing Secret) is retried with the restart back-off; the conditions
carry the cause's reason (``PrepareFailed``, ``RktTimeout``, ``DependencyMissing``...) and
``status.startFailure`` the count. Once the starts have failed for the task's
``spec.progressDeadlineSeconds``, ``Stalled=True`` (reason ``ProgressDeadlineExceeded``)
tells GitOps tools it failed, with ``Reconciling=False`` since kstatus reads a true
Reconciling first; the retries go on, and the first start that succeeds clears it all.

(1) The readiness probe has not succeeded yet (``ReadinessPending``) or failed
(``ProbeFailed``): the agent has nothing left to do, so Reconciling stays False; kstatus
reads ``Ready=False`` as InProgress, as for an unready Pod. A pod stopped because its
liveness probe failed backs off (``CrashLoopBackOff``) or fails (``LivenessProbeFailed``)
like any failed exit (``rkt_operator.model.probes``).

A condition's ``reason`` is one of the CamelCase constants below and names the situation on
all three conditions; ``lastTransitionTime`` changes only when the condition's status flips;
each condition carries the ``observedGeneration`` it was computed for. The first write for a
new generation already says ``Reconciling=True``, so no tool sees an unstarted task as
Current. Nothing here reads a clock or talks to Kubernetes: callers pass ``now``.

Size: the status table above, its builders and the few readers of a written status stay
in one module, so that what is written and how it is read back cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from rkt_operator.model import status as api

READY = api.READY
RECONCILING = api.RECONCILING
STALLED = api.STALLED
CONDITION_TYPES = (READY, RECONCILING, STALLED)

TRUE = "True"
FALSE = "False"
UNKNOWN = "Unknown"

# Phases (a summary for printer columns and the health checks; conditions are authoritative).
PENDING = "Pending"
PREPARING = "Preparing"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
TERMINATING = "Terminating"

# Reasons: stable CamelCase words (metav1.Condition's reason pattern).
STARTING = "Starting"
REPLACING = "Replacing"
POD_RUNNING = "PodRunning"
POD_SUCCEEDED = "PodSucceeded"
POD_FAILED = "PodFailed"
POD_LOST = "PodLost"
CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
INVALID_SPEC = "InvalidSpec"  # = errors.SpecError.reason
DEPENDENCY_MISSING = "DependencyMissing"  # = errors.DependencyError.reason
READINESS_PENDING = "ReadinessPending"
PROBE_FAILED = "ProbeFailed"
LIVENESS_PROBE_FAILED = "LivenessProbeFailed"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
# Reasons of a pod that exited: a Stalled condition with one of these is the task's outcome,
# not a failure to act on the spec.
EXIT_REASONS = frozenset({POD_FAILED, POD_LOST, LIVENESS_PROBE_FAILED})
# Stalled reasons the agent keeps acting on (failed starts are still retried).
RETRIED_STALLS = frozenset({PROGRESS_DEADLINE_EXCEEDED})

# Status keys this agent owns; anything else under .status is left alone.
OWNED_KEYS = (
    "phase",
    "observedGeneration",
    "conditions",
    "message",
    "uuid",
    "ip",
    "portMap",
    "ports",
    "portSummary",
    "nodeName",
    "startedAt",
    "finishedAt",
    "exitCode",
    "stopSignal",
    "restarts",
    "restartEventsPosted",
    "backoff",
    "startFailure",
)

MAX_MESSAGE = 1024


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes times."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object) -> datetime | None:
    """Parse a time written by :func:`format_time` (or any RFC 3339 string); None if absent
    or malformed (status is input too, and a human may have edited it)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _clip(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


@dataclass(frozen=True)
class Summary:
    """The task's situation in one value: the phase, a reason and a message for people, and
    which of the abnormal conditions hold."""

    phase: str
    reason: str
    message: str
    ready: bool = False
    reconciling: bool = False
    stalled: bool = False


def starting(message: str = "accepted by the node agent", *, replacing: bool = False) -> Summary:
    """Accepted or (re)starting: the first thing written for a new generation."""
    return Summary(PENDING, REPLACING if replacing else STARTING, message, reconciling=True)


def preparing(uuid: str | None = None) -> Summary:
    """rkt is preparing or launching the pod (the UUID is known once prepared)."""
    message = f"launching pod {uuid}" if uuid else "preparing the pod"
    return Summary(PREPARING, STARTING, message, reconciling=True)


def terminating(uuid: str | None) -> Summary:
    pod = f"pod {uuid}" if uuid else "the pod"
    return Summary(TERMINATING, TERMINATING, f"stopping {pod}", reconciling=True)


def running(uuid: str, ip: str | None) -> Summary:
    where = f" at {ip}" if ip else ""
    return Summary(RUNNING, POD_RUNNING, f"pod {uuid} is running{where}", ready=True)


def not_ready(uuid: str, ip: str | None, probe_detail: str | None) -> Summary:
    """The pod runs but its readiness probe has not succeeded: not yet (``probe_detail``
    None) or it failed (the detail of the failing run)."""
    where = f" at {ip}" if ip else ""
    if probe_detail is None:
        return Summary(
            RUNNING,
            READINESS_PENDING,
            f"pod {uuid} is running{where}; waiting for its readiness probe to succeed",
        )
    return Summary(
        RUNNING,
        PROBE_FAILED,
        f"pod {uuid} is running{where} but not ready: readiness probe failed: {probe_detail}",
    )


def _liveness(failures: int, detail: str) -> str:
    times = "time" if failures == 1 else "times in a row"
    return f"{LIVENESS_PROBE_FAILED}: the liveness probe failed {failures} {times} ({detail})"


def succeeded(uuid: str | None) -> Summary:
    pod = f"pod {uuid}" if uuid else "the pod"
    return Summary(SUCCEEDED, POD_SUCCEEDED, f"{pod} completed with exit code 0", ready=True)


def failed(
    uuid: str | None,
    exit_code: int | None,
    *,
    lost: bool = False,
    liveness: tuple[int, str] | None = None,
) -> Summary:
    """The pod's exit ended the task; ``liveness``: the agent stopped it because its
    liveness probe failed (consecutive failures, detail of the last run)."""
    pod = f"pod {uuid}" if uuid else "the pod"
    if liveness is not None:
        return Summary(
            FAILED,
            LIVENESS_PROBE_FAILED,
            f"{pod} was stopped: {_liveness(*liveness)}",
            stalled=True,
        )
    if lost:
        return Summary(FAILED, POD_LOST, f"{pod} disappeared from rkt", stalled=True)
    code = "an unknown exit code" if exit_code is None else f"exit code {exit_code}"
    return Summary(FAILED, POD_FAILED, f"{pod} failed with {code}", stalled=True)


def backing_off(
    exit_code: int | None,
    delay_seconds: float,
    restarts: int,
    *,
    liveness: tuple[int, str] | None = None,
) -> Summary:
    code = "an unknown exit code" if exit_code is None else f"exit code {exit_code}"
    why = f"it was stopped: {_liveness(*liveness)}" if liveness else f"it exited with {code}"
    times = "restart" if restarts == 1 else "restarts"
    return Summary(
        PENDING,
        CRASH_LOOP_BACK_OFF,
        f"back-off {delay_seconds:g}s restarting the pod ({why}; {restarts} {times} so far)",
        reconciling=True,
    )


def stopped_by_agent(summary: Summary, signal_name: str, exit_code: int | None) -> Summary:
    """``summary`` of a pod the agent stopped, saying so: rkt reports a pod stopped with
    SIGTERM as exit code 0, which alone reads as if the app had finished."""
    if signal_name == "SIGKILL":
        how = "the agent killed it with SIGKILL (rkt stop --force, after the kill timeout)"
    else:
        how = "the agent stopped it with SIGTERM (rkt stop)"
    if how in summary.message:  # kept from an earlier status that said it already
        return summary
    code = "no exit code" if exit_code is None else f"exit code {exit_code}"
    return replace(summary, message=f"{summary.message}; {how}, rkt reported {code}")


def stalled(reason: str, message: str, *, field: str | None = None) -> Summary:
    """A problem that retrying the same spec cannot fix (invalid spec, prepare refused)."""
    text = f"{field}: {message}" if field and not message.startswith(field) else message
    return Summary(FAILED, reason, text, stalled=True)


def waiting(reason: str, message: str, *, phase: str = PENDING) -> Summary:
    """Held back by something that may resolve itself (a missing Secret, rkt failing)."""
    return Summary(phase, reason, message, reconciling=True)


@dataclass(frozen=True)
class StartFailureFacts:
    """``status.startFailure``: starts that failed in a row for a cause that can heal."""

    reason: str
    message: str
    attempts: int
    since: datetime
    last: datetime
    restart: bool = False

    def as_status(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "message": _clip(self.message),
            "attempts": self.attempts,
            "since": format_time(self.since),
            "last": format_time(self.last),
            "restart": self.restart,
        }


@dataclass(frozen=True)
class BackoffFacts:
    """``status.backoff``: the exited pod is started again at ``restart_at``, after the
    delay of back-off ``step``."""

    step: int
    restart_at: datetime

    def as_status(self) -> dict[str, Any]:
        return {"step": self.step, "restartAt": format_time(self.restart_at)}


def start_failing(
    failure: StartFailureFacts, *, retry_at: datetime, stalled: bool, deadline_seconds: float
) -> Summary:
    """A start failed for a cause that can heal and is tried again at ``retry_at``;
    ``stalled``: the starts have failed for the whole progress deadline."""
    tries = "1 failed start" if failure.attempts == 1 else f"{failure.attempts} failed starts"
    retry = f"next try at {format_time(retry_at)}"
    if stalled:
        text = (
            f"no start succeeded within spec.progressDeadlineSeconds ({deadline_seconds:g}s): "
            f"{failure.reason}: {failure.message}; {tries}, still retrying, {retry}"
        )
        return Summary(PENDING, PROGRESS_DEADLINE_EXCEEDED, text, stalled=True)
    text = f"{failure.message}; {tries}, {retry}"
    return Summary(PENDING, failure.reason, text, reconciling=True)


def _condition(
    kind: str,
    holds: bool,
    summary: Summary,
    previous: Mapping[str, Any] | None,
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    status = TRUE if holds else FALSE
    since = format_time(now)
    if previous is not None and previous.get("status") == status:
        since = str(previous.get("lastTransitionTime") or since)
    return {
        "type": kind,
        "status": status,
        "reason": summary.reason,
        "message": _clip(summary.message),
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def build_conditions(
    summary: Summary,
    previous: Sequence[Mapping[str, Any]] | None,
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """The full condition list for ``summary``; foreign condition types are kept as they are."""
    by_type = {c.get("type"): c for c in previous or () if isinstance(c, Mapping)}
    ours = [
        _condition(READY, summary.ready, summary, by_type.get(READY), generation, now),
        _condition(
            RECONCILING, summary.reconciling, summary, by_type.get(RECONCILING), generation, now
        ),
        _condition(STALLED, summary.stalled, summary, by_type.get(STALLED), generation, now),
    ]
    foreign = [dict(c) for t, c in by_type.items() if t not in CONDITION_TYPES]
    return ours + foreign


@dataclass(frozen=True)
class PodFacts:
    """What the status says about the pod (None leaves a field out)."""

    uuid: str | None = None
    ip: str | None = None
    port_map: Mapping[str, int] | None = None
    ports: Sequence[Mapping[str, Any]] | None = None  # status.ports entries (camelCase)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    restarts: int = 0
    stop_signal: str | None = None  # the agent stopped the pod: SIGTERM, or SIGKILL if forced
    start_failure: StartFailureFacts | None = None
    # How many restarts have had their Restarting event (None: all of them, an older agent's
    # status) and the restart back-off the task is in.
    restart_events_posted: int | None = None
    backoff: BackoffFacts | None = None


def build_status(
    summary: Summary,
    pod: PodFacts,
    *,
    previous: Mapping[str, Any] | None,
    generation: int,
    now: datetime,
    node_name: str | None = None,
) -> dict[str, Any]:
    """The whole status stanza this agent owns, from scratch (absent keys mean "unset")."""
    previous = previous or {}
    ports = [dict(p) for p in pod.ports or ()]
    summary_text = api.port_summary(api.PortStatus.model_validate(p) for p in ports)
    status: dict[str, Any] = {
        "phase": summary.phase,
        "nodeName": node_name,
        "observedGeneration": generation,
        "conditions": build_conditions(
            summary, previous.get("conditions"), generation=generation, now=now
        ),
        "message": _clip(summary.message),
        "restarts": pod.restarts,
    }
    optional: dict[str, Any] = {
        "uuid": pod.uuid,
        "ip": pod.ip,
        "portMap": dict(pod.port_map) if pod.port_map else None,
        "ports": ports or None,
        "portSummary": summary_text or None,
        "startedAt": format_time(pod.started_at) if pod.started_at else None,
        "finishedAt": format_time(pod.finished_at) if pod.finished_at else None,
        "exitCode": pod.exit_code,
        "stopSignal": pod.stop_signal,
        "startFailure": pod.start_failure.as_status() if pod.start_failure else None,
        "restartEventsPosted": pod.restart_events_posted,
        "backoff": pod.backoff.as_status() if pod.backoff else None,
    }
    status.update({k: v for k, v in optional.items() if v is not None})
    return {k: v for k, v in status.items() if v is not None}


def validate(status: Mapping[str, Any]) -> None:
    """Check a built status against the API model (raises pydantic's ValidationError): a
    builder bug shows up here rather than as a rejected PATCH."""
    api.RktTaskStatus.model_validate(dict(status))


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch turning ``current`` into ``desired`` for the keys we own.

    Changed keys are set (``conditions`` as a whole list: merge patches replace lists), owned
    keys missing from ``desired`` are deleted with ``None``, foreign keys are left alone.
    An empty dict means there is nothing to write.
    """
    current = current or {}
    patch: dict[str, Any] = {}
    for key in OWNED_KEYS:
        if key in desired:
            if current.get(key) != desired[key]:
                patch[key] = desired[key]
        elif current.get(key) is not None:
            patch[key] = None
    return patch


def condition(status: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    """The condition of type ``kind`` in ``status``, if any."""
    for cond in (status or {}).get("conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return None


def is_true(status: Mapping[str, Any] | None, kind: str, *, generation: int | None = None) -> bool:
    """Whether condition ``kind`` is True (for ``generation``, when given)."""
    cond = condition(status, kind)
    if cond is None or cond.get("status") != TRUE:
        return False
    return generation is None or cond.get("observedGeneration") == generation


def needs_first_write(status: Mapping[str, Any] | None, generation: int) -> bool:
    """True until the status acknowledges ``generation`` (then tools see it InProgress)."""
    return (status or {}).get("observedGeneration") != generation


def stalled_for(status: Mapping[str, Any] | None, generation: int) -> bool:
    """The spec of ``generation`` was refused for good (invalid, prepare failed): acting on it
    again cannot help until the spec changes. A pod's own failure does not count."""
    cond = condition(status, STALLED)
    return (
        is_true(status, STALLED, generation=generation)
        and cond is not None
        and cond.get("reason") not in EXIT_REASONS | RETRIED_STALLS
    )


def retrying_stalled(status: Mapping[str, Any] | None, generation: int) -> bool:
    """Stalled past the progress deadline, still retrying a start for ``generation``."""
    cond = condition(status, STALLED)
    return (
        is_true(status, STALLED, generation=generation)
        and cond is not None
        and cond.get("reason") in RETRIED_STALLS
    )


def settled_uuid(status: Mapping[str, Any] | None, generation: int) -> str | None:
    """The pod UUID the status has settled on for ``generation`` (reconciling finished for
    this generation, not refused), else None. A pod launched for an older generation stays
    the task's pod when the status settled on it after the spec change (a live update)."""
    status = status or {}
    cond = condition(status, RECONCILING)
    if cond is None or cond.get("status") != FALSE:
        return None
    if cond.get("observedGeneration") != generation:
        return None
    if stalled_for(status, generation) or retrying_stalled(status, generation):
        return None
    uuid = status.get("uuid")
    return uuid if isinstance(uuid, str) and uuid else None
