"""The pure probe bookkeeping (rkt_operator.reconcile.probeplan) and what the decision and the
status make of probe verdicts (plan.decide with a pod stopped for liveness, taskstate.describe
with readiness and liveness verdicts)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rkt_operator.model.probes import Probe
from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.reconcile import plan, probeplan, taskstate
from rkt_operator.reconcile import status as c
from rkt_operator.reconcile.plan import Backoff, Reason, Recorded, RestartPolicy, State
from rkt_operator.reconcile.probeplan import Kind, Result, Verdict
from rkt_operator.rkt.types import PodObservation, TaskIdentity

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
OK = Result(True, "exit code 0")
BAD = Result(False, "exit code 1: not yet")


def probe(**fields: Any) -> Probe:
    return Probe.model_validate({"exec": {"command": ["/bin/true"]}, **fields})


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def feed(track: probeplan.Track, *results: Result, start: float = 0) -> probeplan.Track:
    for i, result in enumerate(results):
        track = probeplan.record(track, result, at(start + i))
    return track


# -- scheduling -------------------------------------------------------------------------


def test_first_run_after_the_initial_delay_then_every_period() -> None:
    track = probeplan.start(Kind.READINESS, probe(initialDelaySeconds=5, periodSeconds=3), T0)
    assert not probeplan.due(track, at(4.9))
    assert probeplan.due(track, at(5))
    track = probeplan.record(track, OK, at(5.5))
    assert not probeplan.due(track, at(8.4))
    assert probeplan.due(track, at(8.5))
    skipped = probeplan.skip(track, at(9))
    assert skipped.next_due == at(12)
    assert (skipped.successes, skipped.verdict) == (track.successes, track.verdict)


def test_retune_keeps_the_verdict_and_counts_afresh() -> None:
    track = feed(probeplan.start(Kind.READINESS, probe(periodSeconds=60), T0), OK, BAD)
    assert track.verdict.ok is True
    assert track.failures == 1
    assert probeplan.retune(track, probe(periodSeconds=60), at(5)) is track  # unchanged
    faster = probeplan.retune(track, probe(periodSeconds=2, failureThreshold=1), at(5))
    assert faster.verdict == track.verdict
    assert (faster.successes, faster.failures) == (0, 0)
    assert faster.next_due == at(7)  # the new period, not the 60 s one
    slower = probeplan.retune(track, probe(periodSeconds=600), at(5))
    assert slower.next_due == track.next_due  # never later than already planned


# -- thresholds ---------------------------------------------------------------------------


def test_readiness_starts_without_verdict_and_needs_its_thresholds() -> None:
    track = probeplan.start(Kind.READINESS, probe(successThreshold=2, failureThreshold=3), T0)
    assert track.verdict == Verdict(None)
    assert feed(track, OK).verdict.ok is None  # one success of two
    assert feed(track, OK, OK).verdict == Verdict(True, "exit code 0")
    assert feed(track, BAD, BAD).verdict.ok is None
    failed = feed(track, BAD, BAD, BAD)
    assert failed.verdict == Verdict(False, "exit code 1: not yet", 3)
    # a success in between starts the count again
    assert feed(track, BAD, BAD, OK, BAD, BAD).verdict.ok is None
    # back to ready after successThreshold consecutive successes
    assert feed(failed, OK, start=10).verdict.ok is False
    assert feed(failed, OK, OK, start=10).verdict.ok is True


def test_liveness_starts_alive_and_fails_after_failure_threshold() -> None:
    track = probeplan.start(Kind.LIVENESS, probe(failureThreshold=2), T0)
    assert track.verdict.ok is True
    assert feed(track, BAD).verdict.ok is True
    assert feed(track, BAD, OK, BAD).verdict.ok is True
    dead = feed(track, BAD, BAD)
    assert dead.verdict == Verdict(False, "exit code 1: not yet", 2)


def test_verdict_detail_changes_only_with_the_verdict() -> None:
    track = probeplan.start(Kind.READINESS, probe(failureThreshold=1), T0)
    first = feed(track, Result(False, "exit code 1: 12:00:01"))
    later = feed(first, Result(False, "exit code 1: 12:00:02"), start=5)
    assert later.verdict == first.verdict  # same outcome: same message, no status write
    assert later.failures == 2


def test_describe_run() -> None:
    assert probeplan.describe_run(0, "") == Result(True, "exit code 0")
    assert probeplan.describe_run(2, "no\n  such\tfile\n") == Result(
        False, "exit code 2: no such file"
    )
    long = probeplan.describe_run(1, "x" * 5000 + " the end")
    assert long.detail.endswith("x the end")
    assert len(long.detail) == len("exit code 1: ") + probeplan.DETAIL_CHARS
    assert probeplan.timed_out(1) == Result(False, "timed out after 1s")


# -- the decision for a pod stopped because its liveness probe failed ---------------------

NOW = T0 + timedelta(hours=1)
BACKOFF = Backoff(initial_seconds=10, max_seconds=300)


def stopped(uuid: str, code: int) -> PodObservation:
    finished = NOW - timedelta(seconds=1)
    started = finished - timedelta(seconds=30)
    return replace(
        POD,
        uuid=uuid,
        identity=TaskIdentity("ns", "t", "uid-1", 1),
        state="exited",
        running=False,
        finished=True,
        exit_code=code,
        created_at=started,
        started_at=started,
        finished_at=finished,
    )


def decide(
    policy: RestartPolicy,
    pods: list[PodObservation],
    recorded: Recorded | None = None,
    *,
    killed: frozenset[str] = frozenset(),
) -> plan.Decision:
    return plan.decide(
        generation=1,
        policy=policy,
        recorded=recorded or Recorded(state=State.RUNNING, generation=1, uuid="a"),
        pods=pods,
        now=NOW,
        backoff=BACKOFF,
        killed=killed,
    )


@pytest.mark.parametrize(
    ("policy", "killed", "state"),
    [
        (RestartPolicy.NEVER, True, State.FAILED),
        (RestartPolicy.NEVER, False, State.SUCCEEDED),
        (RestartPolicy.ON_FAILURE, True, State.BACKOFF),
        (RestartPolicy.ON_FAILURE, False, State.SUCCEEDED),
        (RestartPolicy.ALWAYS, True, State.BACKOFF),
    ],
)
def test_a_killed_pod_exited_in_failure_whatever_its_code(
    policy: RestartPolicy, killed: bool, state: State
) -> None:
    # a pod stopped gracefully records exit code 0
    decision = decide(policy, [stopped("a", 0)], killed=frozenset({"a"} if killed else ()))
    assert decision.state is state
    assert decision.reason is Reason.REPORT_EXIT
    assert decision.exit_code == 0
    assert decision.pod_uuid == "a"


@pytest.mark.parametrize("state", [State.FAILED, State.BACKOFF])
def test_a_reported_failure_stands_after_the_agent_forgot_the_kill(state: State) -> None:
    # The agent restarted: nothing in memory says the pod was killed, the status does.
    recorded = Recorded(
        state=state, generation=1, uuid="a", exit_code=0, finished_at=NOW - timedelta(seconds=1)
    )
    policy = RestartPolicy.NEVER if state is State.FAILED else RestartPolicy.ON_FAILURE
    decision = decide(policy, [stopped("a", 0)], recorded)
    assert decision.state is state
    assert decision.reason is (Reason.WAIT if state is State.FAILED else Reason.RESTART_AFTER)
    # and once the pod is gone (garbage-collected), a back-off still ends in a restart
    gone = decide(policy, [], replace(recorded, finished_at=NOW - timedelta(hours=1)))
    expected = State.FAILED if state is State.FAILED else State.PENDING
    assert gone.state is expected
    assert (gone.start is not None) is (state is State.BACKOFF)


# -- the status for probe verdicts --------------------------------------------------------

SPEC = RktTaskSpec.model_validate(
    {
        "nodeName": "n1",
        "image": "example.com/web:1",
        "readinessProbe": {"exec": {"command": ["/bin/true"]}},
    }
)
POD = PodObservation(
    uuid="a",
    identity=None,
    state="running",
    running=True,
    finished=False,
    exit_code=None,
    ip="10.1.0.2",
    created_at=T0,
    started_at=T0,
    finished_at=None,
)
RUNNING = plan.Decision(reason=Reason.WAIT, state=State.RUNNING, pod_uuid="a")


def describe(
    decision: plan.Decision,
    previous: dict[str, Any] | None = None,
    *,
    readiness: Verdict | None = None,
    killed: Verdict | None = None,
) -> c.Summary:
    summary, _ = taskstate.describe(
        decision,
        spec=SPEC,
        pod=POD if decision.state is State.RUNNING else None,
        previous=previous or {},
        backoff=BACKOFF,
        readiness=readiness,
        killed=killed,
    )
    return summary


def test_running_and_ready_without_readiness_probe_or_once_it_succeeded() -> None:
    for readiness in (None, Verdict(True, "exit code 0")):
        summary = describe(RUNNING, readiness=readiness)
        assert (summary.phase, summary.reason, summary.ready) == ("Running", "PodRunning", True)


def test_running_but_not_ready_until_the_readiness_probe_succeeds() -> None:
    pending = describe(RUNNING, readiness=Verdict(None))
    assert (pending.phase, pending.reason) == ("Running", "ReadinessPending")
    assert (pending.ready, pending.reconciling, pending.stalled) == (False, False, False)
    assert pending.message == (
        "pod a is running at 10.1.0.2; waiting for its readiness probe to succeed"
    )
    failing = describe(RUNNING, readiness=Verdict(False, "exit code 1: no /local/ready", 3))
    assert (failing.phase, failing.reason) == ("Running", "ProbeFailed")
    assert (failing.ready, failing.reconciling, failing.stalled) == (False, False, False)
    assert failing.message == (
        "pod a is running at 10.1.0.2 but not ready: readiness probe failed: "
        "exit code 1: no /local/ready"
    )


def test_kstatus_reads_an_unready_running_task_as_in_progress() -> None:
    summary = describe(RUNNING, readiness=Verdict(False, "exit code 1", 3))
    status = c.build_status(summary, c.PodFacts(uuid="a"), previous=None, generation=1, now=T0)
    c.validate(status)
    # kstatus: observedGeneration matches, no abnormal-true condition, Ready False
    assert status["observedGeneration"] == 1
    assert not c.is_true(status, c.RECONCILING)
    assert not c.is_true(status, c.STALLED)
    assert c.condition(status, c.READY) == {
        "type": "Ready",
        "status": "False",
        "reason": "ProbeFailed",
        "message": summary.message,
        "lastTransitionTime": "2026-01-01T12:00:00Z",
        "observedGeneration": 1,
    }
    # the pod stays the task's settled pod (a later live update keeps it)
    assert c.settled_uuid(status, 1) == "a"


LIVENESS = Verdict(False, "exit code 1: stuck", 3)


def test_backing_off_after_a_liveness_kill_says_so() -> None:
    decision = plan.Decision(
        reason=Reason.REPORT_EXIT,
        state=State.BACKOFF,
        pod_uuid="a",
        exit_code=0,
        restarts=0,
        backoff_step=0,
        finished_at=T0,
    )
    summary = describe(decision, killed=LIVENESS)
    assert summary.reason == "CrashLoopBackOff"
    assert summary.reconciling
    assert summary.message == (
        "back-off 10s restarting the pod (it was stopped: LivenessProbeFailed: the liveness "
        "probe failed 3 times in a row (exit code 1: stuck); 0 restarts so far)"
    )


def test_failing_after_a_liveness_kill_says_so_and_keeps_saying_it() -> None:
    decision = plan.Decision(
        reason=Reason.REPORT_EXIT, state=State.FAILED, pod_uuid="a", exit_code=0, finished_at=T0
    )
    summary = describe(decision, killed=LIVENESS)
    assert (summary.phase, summary.reason, summary.stalled) == (
        "Failed",
        "LivenessProbeFailed",
        True,
    )
    assert summary.message == (
        "pod a was stopped: LivenessProbeFailed: the liveness probe failed 3 times in a row "
        "(exit code 1: stuck)"
    )
    status = c.build_status(summary, c.PodFacts(uuid="a"), previous=None, generation=1, now=T0)
    # An exit, not a refused spec: the reconcile goes on for this generation.
    assert not c.stalled_for(status, 1)
    # After an agent restart the kill is no longer in memory: the status keeps its story.
    again = describe(replace(decision, reason=Reason.WAIT), status)
    assert again == summary
    # A plain failure of another pod is not mistaken for it.
    other = describe(replace(decision, pod_uuid="b"), status)
    assert other.reason == "PodFailed"


@pytest.mark.parametrize(
    ("old", "new", "live"),
    [
        ({"image": "a"}, {"image": "a", "readinessProbe": {"exec": {"command": ["x"]}}}, True),
        (
            {"image": "a", "livenessProbe": {"exec": {"command": ["x"]}}},
            {"image": "a", "livenessProbe": {"exec": {"command": ["y"]}, "periodSeconds": 2}},
            True,
        ),
        ({"image": "a", "readinessProbe": {"exec": {"command": ["x"]}}}, {"image": "a"}, True),
        (
            {"image": "a", "readinessProbe": {"exec": {"command": ["x"]}}},
            {"image": "b", "readinessProbe": {"exec": {"command": ["y"]}}},
            False,
        ),
    ],
)
def test_probe_changes_are_live(old: dict[str, Any], new: dict[str, Any], live: bool) -> None:
    assert taskstate.live_only_change(old, new) is live


def test_a_pod_the_agent_stopped_says_so_with_its_signal_and_keeps_it() -> None:
    decision = plan.Decision(
        reason=Reason.REPORT_EXIT, state=State.FAILED, pod_uuid="a", exit_code=0, finished_at=T0
    )
    stopped = replace(POD, state="exited", running=False, finished=True, exit_code=0,
                      stop_signal="SIGTERM")  # fmt: skip
    summary, facts = taskstate.describe(
        decision, spec=SPEC, pod=stopped, previous={}, backoff=BACKOFF, killed=LIVENESS
    )
    assert facts.stop_signal == "SIGTERM"
    assert summary.message.endswith(
        "; the agent stopped it with SIGTERM (rkt stop), rkt reported exit code 0"
    )
    status = c.build_status(summary, facts, previous=None, generation=1, now=T0)
    c.validate(status)
    assert (status["exitCode"], status["stopSignal"]) == (0, "SIGTERM")
    # After an agent restart (the pod gone from rkt, the probe's verdict forgotten) the
    # status keeps the signal and says it once.
    again, facts2 = taskstate.describe(
        decision, spec=SPEC, pod=None, previous=status, backoff=BACKOFF
    )
    assert facts2.stop_signal == "SIGTERM"
    assert again.message == summary.message


def test_a_forced_stop_says_sigkill_and_an_app_that_ended_by_itself_says_nothing() -> None:
    decision = plan.Decision(
        reason=Reason.REPORT_EXIT, state=State.FAILED, pod_uuid="a", exit_code=137, finished_at=T0
    )
    killed = replace(POD, running=False, finished=True, exit_code=137, stop_signal="SIGKILL")
    summary, _ = taskstate.describe(
        decision, spec=SPEC, pod=killed, previous={}, backoff=BACKOFF, killed=LIVENESS
    )
    assert summary.message.endswith(
        "; the agent killed it with SIGKILL (rkt stop --force, after the kill timeout), rkt "
        "reported exit code 137"
    )
    ended = replace(POD, running=False, finished=True, exit_code=137)
    plain, facts = taskstate.describe(decision, spec=SPEC, pod=ended, previous={}, backoff=BACKOFF)
    assert facts.stop_signal is None
    assert plain.message == "pod a failed with exit code 137"
