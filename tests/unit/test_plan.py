"""Table tests of the pure pod decision (rkt_operator.reconcile.plan)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from rkt_operator.reconcile import plan
from rkt_operator.reconcile.plan import (
    Backoff,
    Reason,
    Recorded,
    RemovePod,
    RestartPolicy,
    StartPod,
    State,
    StopPod,
)
from rkt_operator.rkt.types import PodObservation, PodStamp, TaskIdentity

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
BACKOFF = Backoff(initial_seconds=10, max_seconds=300)


def pod(
    uuid: str,
    gen: int,
    state: str,
    running: bool,
    finished: bool,
    exit_code: int | None = None,
    created_at: datetime | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> PodObservation:
    """A pod of task "ns/t" started for generation ``gen``, as the executor reports it."""
    return PodObservation(
        uuid=uuid,
        identity=TaskIdentity("ns", "t", "uid-1", gen),
        state=state,
        running=running,
        finished=finished,
        exit_code=exit_code,
        ip=None,
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
    )


def running(uuid: str, gen: int = 1, age: float = 60) -> PodObservation:
    created = NOW - timedelta(seconds=age)
    return pod(uuid, gen, "running", True, False, None, created, created)


def prepared(uuid: str, gen: int = 1, age: float = 5) -> PodObservation:
    created = NOW - timedelta(seconds=age)
    return pod(uuid, gen, "prepared", False, False, None, created)


def preparing(uuid: str, gen: int = 1) -> PodObservation:
    return pod(uuid, gen, "preparing", False, False, None, NOW - timedelta(seconds=1))


def exited(
    uuid: str, code: int | None, gen: int = 1, ran: float = 30, ago: float = 1
) -> PodObservation:
    finished = NOW - timedelta(seconds=ago)
    started = finished - timedelta(seconds=ran)
    return pod(uuid, gen, "exited", False, True, code, started, started, finished)


@dataclass
class Row:
    id: str
    pods: list[PodObservation]
    recorded: Recorded = field(default_factory=Recorded)
    policy: RestartPolicy = RestartPolicy.NEVER
    generation: int = 1
    backoff: Backoff = BACKOFF
    # expectations
    reason: Reason = Reason.WAIT
    state: State = State.RUNNING
    actions: tuple[StopPod | RemovePod | StartPod, ...] = ()
    pod_uuid: str | None = None
    exit_code: int | None = None
    restarts: int = 0
    backoff_step: int = 0
    requeue_after: float | None = None


REC_RUNNING_A = Recorded(state=State.RUNNING, generation=1, uuid="a")

ROWS = [
    Row(
        "new task: start",
        pods=[],
        reason=Reason.START,
        state=State.PENDING,
        actions=(StartPod(Reason.START),),
    ),
    Row(
        "status names a prepared pod, none on disk: start again",
        pods=[],
        recorded=Recorded(state=State.PENDING, generation=1, uuid="gone"),
        reason=Reason.START,
        state=State.PENDING,
        actions=(StartPod(Reason.START),),
    ),
    Row(
        "running pod the status does not know: adopt",
        pods=[running("a")],
        reason=Reason.ADOPT_RUNNING,
        pod_uuid="a",
    ),
    Row(
        "running pod already recorded: nothing to do",
        pods=[running("a")],
        recorded=REC_RUNNING_A,
        pod_uuid="a",
    ),
    Row(
        "prepared pod (agent died before launch): adopt and launch it",
        pods=[prepared("a")],
        recorded=Recorded(state=State.PENDING, generation=1, uuid="a"),
        reason=Reason.ADOPT_PREPARED,
        state=State.PENDING,
        actions=(StartPod(Reason.ADOPT_PREPARED),),
        pod_uuid="a",
    ),
    Row(
        "two running pods of one generation: keep the newest, stop the other",
        pods=[running("old", age=100), running("new", age=10)],
        recorded=Recorded(state=State.RUNNING, generation=1, uuid="new"),
        reason=Reason.REMOVE_DUPLICATES,
        actions=(StopPod("old", Reason.REMOVE_DUPLICATES),),
        pod_uuid="new",
    ),
    Row(
        "running and prepared duplicate: keep the newest live pod",
        pods=[running("run", age=100), prepared("prep", age=10)],
        recorded=Recorded(state=State.PENDING, generation=1, uuid="prep"),
        reason=Reason.ADOPT_PREPARED,
        state=State.PENDING,
        actions=(StopPod("run", Reason.REMOVE_DUPLICATES), StartPod(Reason.ADOPT_PREPARED)),
        pod_uuid="prep",
    ),
    Row(
        "interrupted prepare debris next to a running pod is removed",
        pods=[running("a", age=100), preparing("junk")],
        recorded=REC_RUNNING_A,
        reason=Reason.REMOVE_STALE,
        actions=(RemovePod("junk", Reason.REMOVE_STALE),),
        pod_uuid="a",
    ),
    Row(
        "spec changed: stop the old generation, then start the new one",
        pods=[running("a", gen=1)],
        recorded=Recorded(state=State.PENDING, generation=2, uuid="a"),
        generation=2,
        reason=Reason.REPLACE_OUTDATED,
        state=State.PENDING,
        actions=(StopPod("a", Reason.REPLACE_OUTDATED), StartPod(Reason.REPLACE_OUTDATED)),
    ),
    Row(
        "spec changed after a run of restarts: the count starts over",
        pods=[exited("a", 1, gen=1)],
        recorded=Recorded(state=State.BACKOFF, generation=1, uuid="a", restarts=4),
        generation=2,
        backoff=Backoff(10, 300, step=4),
        reason=Reason.REPLACE_OUTDATED,
        state=State.PENDING,
        actions=(RemovePod("a", Reason.REPLACE_OUTDATED), StartPod(Reason.REPLACE_OUTDATED)),
    ),
    Row(
        "new generation already running, old one still alive: stop the old one",
        pods=[running("new", gen=2, age=5), running("old", gen=1, age=500)],
        recorded=Recorded(state=State.RUNNING, generation=2, uuid="new"),
        generation=2,
        reason=Reason.REPLACE_OUTDATED,
        actions=(StopPod("old", Reason.REPLACE_OUTDATED),),
        pod_uuid="new",
    ),
    Row(
        "live-applied change (kill timeout): the older pod is accepted, no restart",
        pods=[running("a", gen=1)],
        recorded=Recorded(state=State.RUNNING, generation=2, uuid="a", accepted_uuid="a"),
        generation=2,
        pod_uuid="a",
    ),
    Row(
        "batch pod exited 0, policy Never: Succeeded",
        pods=[exited("a", 0)],
        recorded=REC_RUNNING_A,
        reason=Reason.REPORT_EXIT,
        state=State.SUCCEEDED,
        pod_uuid="a",
        exit_code=0,
    ),
    Row(
        "exit already reported: nothing to do",
        pods=[exited("a", 0)],
        recorded=Recorded(
            state=State.SUCCEEDED, generation=1, uuid="a", exit_code=0, finished_at=T0
        ),
        state=State.SUCCEEDED,
        pod_uuid="a",
        exit_code=0,
    ),
    Row(
        "exit 3, policy Never: Failed with the code",
        pods=[exited("a", 3)],
        recorded=REC_RUNNING_A,
        reason=Reason.REPORT_EXIT,
        state=State.FAILED,
        pod_uuid="a",
        exit_code=3,
    ),
    Row(
        "exit 0, policy OnFailure: Succeeded, no restart",
        pods=[exited("a", 0)],
        recorded=REC_RUNNING_A,
        policy=RestartPolicy.ON_FAILURE,
        reason=Reason.REPORT_EXIT,
        state=State.SUCCEEDED,
        pod_uuid="a",
        exit_code=0,
    ),
    Row(
        "exit 1, policy OnFailure, just now: back off 10 s",
        pods=[exited("a", 1, ago=1)],
        recorded=REC_RUNNING_A,
        policy=RestartPolicy.ON_FAILURE,
        reason=Reason.REPORT_EXIT,
        state=State.BACKOFF,
        pod_uuid="a",
        exit_code=1,
        requeue_after=9.0,
    ),
    Row(
        "exit 0, policy Always, back-off elapsed: restart and count it",
        pods=[exited("a", 0, ago=11)],
        recorded=REC_RUNNING_A,
        policy=RestartPolicy.ALWAYS,
        reason=Reason.RESTART,
        state=State.PENDING,
        actions=(RemovePod("a", Reason.RESTART), StartPod(Reason.RESTART, restart=True)),
        exit_code=0,
        restarts=1,
        backoff_step=1,
    ),
    Row(
        "restarted pod exits at once: a new exit, despite an older finishedAt in status",
        pods=[exited("c", 0, ago=0.5)],
        recorded=Recorded(
            state=State.PENDING,
            generation=1,
            uuid="c",
            exit_code=0,
            finished_at=NOW - timedelta(seconds=100),
            restarts=1,
        ),
        policy=RestartPolicy.ALWAYS,
        backoff=Backoff(10, 300, step=1),
        reason=Reason.REPORT_EXIT,
        state=State.BACKOFF,
        pod_uuid="c",
        exit_code=0,
        restarts=1,
        backoff_step=1,
        requeue_after=19.5,
    ),
    Row(
        "back-off doubles with each restart",
        pods=[exited("b", 1, ago=30)],
        recorded=Recorded(
            state=State.BACKOFF,
            generation=1,
            uuid="b",
            exit_code=1,
            finished_at=NOW - timedelta(seconds=30),
            restarts=2,
        ),
        policy=RestartPolicy.ON_FAILURE,
        backoff=Backoff(10, 300, step=2),
        reason=Reason.RESTART_AFTER,
        state=State.BACKOFF,
        pod_uuid="b",
        exit_code=1,
        restarts=2,
        backoff_step=2,
        requeue_after=10.0,
    ),
    Row(
        "back-off is capped",
        pods=[exited("b", 1, ago=299)],
        recorded=Recorded(
            state=State.BACKOFF,
            generation=1,
            uuid="b",
            exit_code=1,
            finished_at=NOW - timedelta(seconds=299),
            restarts=9,
        ),
        policy=RestartPolicy.ALWAYS,
        backoff=Backoff(10, 300, step=9),
        reason=Reason.RESTART_AFTER,
        state=State.BACKOFF,
        pod_uuid="b",
        exit_code=1,
        restarts=9,
        backoff_step=9,
        requeue_after=1.0,
    ),
    Row(
        "a pod that ran 10 minutes resets the back-off",
        pods=[exited("b", 1, ran=601, ago=11)],
        recorded=Recorded(state=State.RUNNING, generation=1, uuid="b", restarts=5),
        policy=RestartPolicy.ALWAYS,
        backoff=Backoff(10, 300, step=5),
        reason=Reason.RESTART,
        state=State.PENDING,
        actions=(RemovePod("b", Reason.RESTART), StartPod(Reason.RESTART, restart=True)),
        exit_code=1,
        restarts=6,
        backoff_step=1,
    ),
    Row(
        "backing off and the exited pod was garbage-collected: restart when due",
        pods=[],
        recorded=Recorded(
            state=State.BACKOFF,
            generation=1,
            uuid="b",
            exit_code=1,
            finished_at=NOW - timedelta(seconds=60),
            restarts=1,
        ),
        policy=RestartPolicy.ON_FAILURE,
        backoff=Backoff(10, 300, step=1),
        reason=Reason.RESTART,
        state=State.PENDING,
        actions=(StartPod(Reason.RESTART, restart=True),),
        exit_code=1,
        restarts=2,
        backoff_step=2,
    ),
    Row(
        "terminal task whose pod was garbage-collected is never started again",
        pods=[],
        recorded=Recorded(
            state=State.SUCCEEDED, generation=1, uuid="a", exit_code=0, finished_at=T0
        ),
        state=State.SUCCEEDED,
        pod_uuid="a",
        exit_code=0,
    ),
    Row(
        "running pod vanished, policy Never: Failed, lost",
        pods=[],
        recorded=REC_RUNNING_A,
        reason=Reason.POD_LOST,
        state=State.FAILED,
        pod_uuid="a",
    ),
    Row(
        "running pod vanished, policy Always: back off before restarting",
        pods=[],
        recorded=REC_RUNNING_A,
        policy=RestartPolicy.ALWAYS,
        reason=Reason.POD_LOST,
        state=State.BACKOFF,
        pod_uuid="a",
        requeue_after=10.0,
    ),
    Row(
        "older finished pods of the generation are removed; newest exit is reported",
        pods=[exited("old", 1, ago=100), exited("new", 0, ago=2)],
        recorded=Recorded(state=State.RUNNING, generation=1, uuid="new"),
        reason=Reason.REPORT_EXIT,
        state=State.SUCCEEDED,
        actions=(RemovePod("old", Reason.REMOVE_STALE),),
        pod_uuid="new",
        exit_code=0,
    ),
    Row(
        "a finished pod next to a live one is stale",
        pods=[exited("old", 1, ago=100), running("a", age=50)],
        recorded=REC_RUNNING_A,
        reason=Reason.REMOVE_STALE,
        actions=(RemovePod("old", Reason.REMOVE_STALE),),
        pod_uuid="a",
    ),
    Row(
        "accepted older pod exits: report it; a restart starts the new generation",
        pods=[exited("a", 2, gen=1, ago=20)],
        recorded=Recorded(state=State.RUNNING, generation=2, uuid="a", accepted_uuid="a"),
        generation=2,
        policy=RestartPolicy.ON_FAILURE,
        reason=Reason.RESTART,
        state=State.PENDING,
        actions=(RemovePod("a", Reason.RESTART), StartPod(Reason.RESTART, restart=True)),
        exit_code=2,
        restarts=1,
        backoff_step=1,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_decide(row: Row) -> None:
    decision = plan.decide(
        generation=row.generation,
        policy=row.policy,
        recorded=row.recorded,
        pods=row.pods,
        now=NOW,
        backoff=row.backoff,
    )
    assert decision.reason is row.reason
    assert decision.state is row.state
    assert decision.actions == row.actions
    assert decision.pod_uuid == row.pod_uuid
    assert decision.exit_code == row.exit_code
    assert decision.restarts == row.restarts
    assert decision.backoff_step == row.backoff_step
    assert decision.requeue_after == row.requeue_after


def test_never_more_than_one_start_and_never_with_a_live_pod() -> None:
    """Whatever mix of pods rkt reports, one pass starts at most one pod, and only when no
    live pod of the desired generation stays."""
    shapes = [
        running("r1", age=30),
        running("r0", gen=0, age=40),
        prepared("p1", age=20),
        exited("e1", 1, ago=50),
        exited("e0", 0, gen=0, ago=60),
        preparing("x1"),
    ]
    for mask in range(1 << len(shapes)):
        pods = [p for i, p in enumerate(shapes) if mask & (1 << i)]
        for policy in RestartPolicy:
            d = plan.decide(
                generation=1,
                policy=policy,
                recorded=Recorded(generation=1),
                pods=pods,
                now=NOW,
                backoff=BACKOFF,
            )
            starts = [a for a in d.actions if isinstance(a, StartPod)]
            assert len(starts) <= 1
            stopped = {a.uuid for a in d.removals}
            kept_live = [p for p in pods if p.live and p.uuid not in stopped]
            assert len(kept_live) <= 1, (mask, policy, d)
            if starts and starts[0].reason is not Reason.ADOPT_PREPARED:
                assert kept_live == []


def test_an_exit_is_reported_once() -> None:
    fresh = plan.decide(
        generation=1,
        policy=RestartPolicy.NEVER,
        recorded=REC_RUNNING_A,
        pods=[exited("a", 0)],
        now=NOW,
        backoff=BACKOFF,
    )
    assert fresh.reason is Reason.REPORT_EXIT
    assert fresh.finished_at == NOW - timedelta(seconds=1)
    again = plan.decide(
        generation=1,
        policy=RestartPolicy.NEVER,
        recorded=Recorded(
            state=State.SUCCEEDED,
            generation=1,
            uuid="a",
            exit_code=0,
            finished_at=fresh.finished_at,
        ),
        pods=[exited("a", 0)],
        now=NOW,
        backoff=BACKOFF,
    )
    assert again.reason is Reason.WAIT


@pytest.mark.parametrize(
    ("step", "seconds"), [(0, 10), (1, 20), (2, 40), (4, 160), (5, 300), (200, 300)]
)
def test_backoff_delay(step: int, seconds: float) -> None:
    assert BACKOFF.delay(step) == seconds


RUNNING_A = Recorded(state=State.RUNNING, generation=1, uuid="a")


@pytest.mark.parametrize(
    ("policy", "state", "requeue"),
    [
        pytest.param(RestartPolicy.ALWAYS, State.BACKOFF, 10.0, id="Always: back off"),
        pytest.param(RestartPolicy.ON_FAILURE, State.BACKOFF, 10.0, id="OnFailure: back off"),
        pytest.param(RestartPolicy.NEVER, State.FAILED, None, id="Never: failed"),
    ],
)
def test_an_unhealthy_pod_is_stopped_and_its_exit_decided_at_once(
    policy: RestartPolicy, state: State, requeue: float | None
) -> None:
    unhealthy = pod("a", 1, "running", True, False, None, NOW, NOW)
    decision = plan.decide(
        generation=1,
        policy=policy,
        recorded=RUNNING_A,
        pods=[unhealthy],
        now=NOW,
        backoff=BACKOFF,
        unhealthy={"a"},
    )
    assert decision.actions == (StopPod("a", Reason.STOP_UNHEALTHY),)
    assert (decision.state, decision.pod_uuid, decision.reason) == (state, "a", Reason.REPORT_EXIT)
    assert decision.requeue_after == requeue
    assert decision.exit_code is None  # the stop's exit fills it in (plan.exited)
    done = plan.exited(decision, exit_code=137, finished_at=NOW + timedelta(seconds=2))
    assert (done.exit_code, done.finished_at) == (137, NOW + timedelta(seconds=2))


def test_a_started_pod_that_runs_is_reported_running_with_the_decisions_counts() -> None:
    recorded = Recorded(state=State.BACKOFF, generation=1, uuid="a", exit_code=3, restarts=1)
    decision = plan.decide(
        generation=1,
        policy=RestartPolicy.ALWAYS,
        recorded=replace(recorded, finished_at=NOW - timedelta(seconds=60)),
        pods=[exited("a", 3, ago=60)],
        now=NOW,
        backoff=replace(BACKOFF, step=1),
    )
    assert decision.start is not None
    running_b = plan.started(decision, uuid="b", running=True, recorded=recorded)
    assert (running_b.state, running_b.pod_uuid, running_b.actions) == (State.RUNNING, "b", ())
    assert (running_b.restarts, running_b.backoff_step) == (
        decision.restarts,
        decision.backoff_step,
    )
    assert running_b.exit_code == 3
    under_way = plan.started(decision, uuid="b", running=False, recorded=recorded)
    assert (under_way.state, under_way.pod_uuid, under_way.actions) == (State.PENDING, "b", ())


# -- failed starts that can heal, and counts that survive crashes (issue 16) --------------


def failing(attempts: int, last_ago: float, *, restart: bool = False) -> plan.StartFailure:
    """``attempts`` failed starts of generation 1, the latest ``last_ago`` seconds ago."""
    last = NOW - timedelta(seconds=last_ago)
    since = last - timedelta(seconds=30 * (attempts - 1))
    return plan.StartFailure("PrepareFailed", "no image", attempts, since, last, restart)


def decide_failing(
    failure: plan.StartFailure, pods: list[PodObservation], **recorded: object
) -> plan.Decision:
    fields: dict[str, object] = {"state": State.PENDING, "generation": 1, "start_failure": failure}
    fields.update(recorded)
    return plan.decide(
        generation=1,
        policy=RestartPolicy.ALWAYS,
        recorded=Recorded(**fields),  # type: ignore[arg-type]
        pods=pods,
        now=NOW,
        backoff=BACKOFF,
    )


@pytest.mark.parametrize(
    ("attempts", "last_ago", "wait"),
    [(1, 3, 7.0), (2, 3, 17.0), (3, 39, 1.0), (9, 200, 100.0)],  # 10 s doubling, 300 s cap
)
def test_a_failed_start_is_tried_again_after_its_back_off(
    attempts: int, last_ago: float, wait: float
) -> None:
    failure = failing(attempts, last_ago)

    waiting = decide_failing(failure, [])

    assert (waiting.reason, waiting.state, waiting.actions) == (
        Reason.RETRY_START_AFTER, State.PENDING, ()
    )  # fmt: skip
    assert waiting.requeue_after == pytest.approx(wait)
    assert waiting.start_failure == failure

    due = decide_failing(replace(failure, last=failure.last - timedelta(seconds=wait)), [])

    assert due.actions == (StartPod(Reason.START),)
    assert due.start_failure is not None  # kept until a start succeeds


def test_a_failed_start_of_another_generation_is_forgotten() -> None:
    decision = decide_failing(failing(5, 1), [], generation=0)
    assert decision.actions == (StartPod(Reason.START),)
    assert decision.start_failure is None


def test_a_failed_restart_is_still_a_restart_when_tried_again() -> None:
    failure = failing(2, 60, restart=True)

    decision = decide_failing(failure, [], uuid="old", exit_code=1, finished_at=T0, restarts=4)

    assert decision.actions == (StartPod(Reason.RESTART, restart=True),)
    assert (decision.restarts, decision.exit_code) == (5, 1)


def test_a_prepared_pod_whose_launch_failed_waits_for_the_back_off_too() -> None:
    failure = failing(1, 2)
    waiting = decide_failing(failure, [prepared("p1")])
    assert (waiting.reason, waiting.actions, waiting.pod_uuid) == (
        Reason.RETRY_START_AFTER, (), "p1"
    )  # fmt: skip
    due = decide_failing(replace(failure, last=NOW - timedelta(seconds=10)), [prepared("p1")])
    assert due.actions == (StartPod(Reason.ADOPT_PREPARED),)


def test_start_failed_counts_the_streak() -> None:
    first = plan.start_failed(None, reason="RktTimeout", message="hung", now=T0, restart=True)
    assert (first.attempts, first.since, first.last, first.restart) == (1, T0, T0, True)
    later = T0 + timedelta(seconds=40)
    second = plan.start_failed(first, reason="PrepareFailed", message="x", now=later, restart=False)
    assert (second.attempts, second.since, second.last) == (2, T0, later)
    assert (second.reason, second.restart) == ("PrepareFailed", False)
    assert not second.past_deadline(later, 600)
    assert second.past_deadline(T0 + timedelta(seconds=600), 600)
    assert second.retry_at(BACKOFF) == later + timedelta(seconds=20)


def stamped(p: PodObservation, restarts: int, step: int) -> PodObservation:
    return replace(p, stamp=PodStamp(restarts=restarts, backoff_step=step))


def test_a_running_pod_carrying_an_unrecorded_restart_counts_it() -> None:
    # The agent prepared restart 3 and died before writing its UUID: the status says 2.
    decision = plan.decide(
        generation=1,
        policy=RestartPolicy.ALWAYS,
        recorded=Recorded(state=State.BACKOFF, generation=1, uuid="old", restarts=2),
        pods=[stamped(running("new"), restarts=3, step=3)],
        now=NOW,
        backoff=Backoff(10, 300, step=0),  # memory lost with the agent
    )
    assert (decision.reason, decision.state, decision.pod_uuid) == (
        Reason.ADOPT_RUNNING, State.RUNNING, "new"
    )  # fmt: skip
    assert (decision.restarts, decision.backoff_step) == (3, 3)


def test_the_back_off_step_comes_from_the_exited_pods_stamp() -> None:
    decision = plan.decide(
        generation=1,
        policy=RestartPolicy.ALWAYS,
        recorded=Recorded(state=State.RUNNING, generation=1, uuid="p", restarts=3),
        pods=[stamped(exited("p", 1, ago=1), restarts=3, step=3)],
        now=NOW,
        backoff=Backoff(10, 300, step=0),
    )
    assert decision.state is State.BACKOFF
    assert decision.requeue_after == pytest.approx(80 - 1)  # 10 * 2**3, not 10
    assert (decision.restarts, decision.backoff_step) == (3, 3)


def test_counts_never_go_backwards_and_other_generations_stamps_do_not_count() -> None:
    decision = plan.decide(
        generation=2,
        policy=RestartPolicy.ALWAYS,
        recorded=Recorded(state=State.RUNNING, generation=2, uuid="p", restarts=5),
        pods=[stamped(running("p", gen=2), restarts=1, step=1), stamped(exited("o", 0), 9, 9)],
        now=NOW,
        backoff=BACKOFF,
    )
    assert decision.restarts == 5


def test_a_failed_launch_of_an_adopted_restart_is_still_a_restart_to_count() -> None:
    # The agent prepared restart 1 and died; the next one adopts the stamped prepared pod.
    decision = plan.decide(
        generation=1,
        policy=RestartPolicy.ALWAYS,
        recorded=Recorded(state=State.RUNNING, generation=1, uuid="old", restarts=0),
        pods=[stamped(prepared("new"), restarts=1, step=1)],
        now=NOW,
        backoff=Backoff(10, 300, step=0),
    )
    assert decision.reason is Reason.ADOPT_PREPARED
    assert decision.restarts == 1
    # Its launch fails (found by the chaos test): the failure must keep the restart to count.
    assert plan.restart_to_count(decision, recorded_restarts=0)
    assert not plan.restart_to_count(decision, recorded_restarts=1)


def test_a_failed_first_start_is_no_restart() -> None:
    decision = plan.decide(
        generation=1,
        policy=RestartPolicy.ALWAYS,
        recorded=Recorded(),
        pods=[],
        now=NOW,
        backoff=BACKOFF,
    )
    assert decision.reason is Reason.START
    assert not plan.restart_to_count(decision, recorded_restarts=0)


# -- status.backoff: the back-off the decision reads (never a condition's reason) ---------


def test_a_recorded_back_off_keeps_its_step_and_due_time_whatever_the_memory_says() -> None:
    # The exit of "a" was reported with back-off step 3 (80 s), due at NOW + 30 s; the agent
    # since restarted (memory step 0) and rkt removed the exited pod.
    due = NOW + timedelta(seconds=30)
    recorded = Recorded(
        state=State.BACKOFF,
        generation=1,
        uuid="a",
        exit_code=1,
        finished_at=due - timedelta(seconds=80),
        restarts=3,
        backoff=plan.BackoffWait(step=3, restart_at=due),
    )
    for pods in ([], [exited("a", 1, ago=50)]):
        waiting = plan.decide(
            generation=1,
            policy=RestartPolicy.ALWAYS,
            recorded=recorded,
            pods=pods,
            now=NOW,
            backoff=Backoff(10, 300, step=0),
        )
        assert (waiting.reason, waiting.state) == (Reason.RESTART_AFTER, State.BACKOFF)
        assert (waiting.backoff_step, waiting.restart_at) == (3, due)
        assert waiting.requeue_after == pytest.approx(30)
        made = plan.decide(
            generation=1,
            policy=RestartPolicy.ALWAYS,
            recorded=recorded,
            pods=pods,
            now=due,
            backoff=Backoff(10, 300, step=0),
        )
        assert (made.reason, made.restarts, made.backoff_step) == (Reason.RESTART, 4, 4)


def test_a_reported_exit_without_a_recorded_back_off_is_decided_again() -> None:
    # The status lost its back-off (say an edit): the exited pod is still there, so its exit
    # is reported again, with the back-off computed from the step.
    decision = plan.decide(
        generation=1,
        policy=RestartPolicy.ALWAYS,
        recorded=Recorded(state=State.PENDING, generation=1, uuid="a", exit_code=1, restarts=1),
        pods=[stamped(exited("a", 1, ago=1), restarts=1, step=1)],
        now=NOW,
        backoff=BACKOFF,
    )
    assert (decision.reason, decision.state) == (Reason.REPORT_EXIT, State.BACKOFF)
    assert decision.restart_at == NOW - timedelta(seconds=1) + timedelta(seconds=20)


# -- Restarting events: at least once, one per restart ------------------------------------


@pytest.mark.parametrize(
    ("restarts", "recorded", "posted", "due"),
    [
        pytest.param(0, 0, 0, [], id="first start: nothing"),
        pytest.param(1, 0, 0, [1], id="the restart this pass made"),
        pytest.param(1, 1, 1, [], id="already posted and recorded: nothing (a resync)"),
        pytest.param(3, 3, 2, [3], id="its post failed: the next pass posts it"),
        pytest.param(3, 2, 1, [2, 3], id="a lost post and a new restart"),
        pytest.param(3, 2, 2, [3], id="read from the pod's stamp (agent died before the write)"),
        pytest.param(4, 4, None, [], id="an older agent's status: all announced"),
        pytest.param(5, 4, None, [5], id="an older agent's status and a new restart"),
        pytest.param(0, 7, 7, [], id="a new generation starts from 0"),
        pytest.param(2, 2, 9, [], id="more posted than counted (edited): nothing"),
    ],
)
def test_restart_events_due(restarts: int, recorded: int, posted: int | None, due: list[int]):
    assert list(plan.restart_events_due(restarts, recorded_restarts=recorded, posted=posted)) == due
