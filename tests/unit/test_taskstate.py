"""Unit tests of the glue between objects, decisions and status (rkt_operator.reconcile.taskstate),
field references (rkt_operator.envrefs) and orphan selection (rkt_operator.orphans)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rkt_operator import envrefs, orphans
from rkt_operator.errors import DependencyError, SpecError
from rkt_operator.model.api import FINALIZER
from rkt_operator.model.env import EnvVar
from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.reconcile import plan, taskstate
from rkt_operator.reconcile import status as c
from rkt_operator.rkt.types import PodObservation, TaskIdentity

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BODY: dict[str, Any] = {
    "metadata": {
        "namespace": "team",
        "name": "web",
        "uid": "u-1",
        "generation": 3,
        "resourceVersion": "42",
        "labels": {"tier": "gold"},
        "annotations": {"note": "hi"},
    },
    "spec": {"nodeName": "n1", "image": "example.com/web:1", "killTimeoutSeconds": 7},
}


def test_task_from_body() -> None:
    task = taskstate.Task.from_body(BODY)
    assert task.identity == TaskIdentity("team", "web", "u-1", 3)
    assert task.ref == "team/web"
    assert task.raw_kill_timeout() == 7.0
    assert taskstate.Task.from_body({"spec": {"killTimeoutSeconds": "x"}}).raw_kill_timeout() == 5


def test_parse_spec_names_the_field() -> None:
    bad = {
        **BODY,
        "spec": {"nodeName": "n1", "image": "x", "ports": [{"name": "p", "hostPort": 0}]},
    }
    with pytest.raises(SpecError) as info:
        taskstate.parse_spec(taskstate.Task.from_body(bad))
    assert info.value.field == "spec.ports[0].hostPort"
    assert str(info.value).startswith("spec.ports[0].hostPort: ")


@pytest.mark.parametrize(
    ("old", "new", "live"),
    [
        ({"image": "a", "killTimeoutSeconds": 5}, {"image": "a", "killTimeoutSeconds": 9}, True),
        ({"image": "a"}, {"image": "a", "killTimeoutSeconds": 9}, True),
        ({"image": "a", "killTimeoutSeconds": 5}, {"image": "b", "killTimeoutSeconds": 9}, False),
        ({"image": "a"}, {"image": "b"}, False),
        ({"image": "a"}, {"image": "a"}, False),
        (None, {"image": "a"}, False),
    ],
)
def test_live_only_change(old: dict[str, Any] | None, new: dict[str, Any], live: bool) -> None:
    assert taskstate.live_only_change(old, new) is live


WAIT = c.BackoffFacts(step=1, restart_at=T0 + timedelta(seconds=20))


def _status(summary: c.Summary, **facts: Any) -> dict[str, Any]:
    return c.build_status(summary, c.PodFacts(**facts), previous=None, generation=3, now=T0)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ({}, None),
        (_status(c.starting()), plan.State.PENDING),
        (_status(c.preparing("ab")), plan.State.PENDING),
        (_status(c.running("ab", None), uuid="ab"), plan.State.RUNNING),
        (_status(c.succeeded("ab"), uuid="ab", exit_code=0), plan.State.SUCCEEDED),
        (_status(c.failed("ab", 2), uuid="ab", exit_code=2), plan.State.FAILED),
        (
            _status(c.backing_off(2, 10, 1), uuid="ab", exit_code=2, backoff=WAIT),
            plan.State.BACKOFF,
        ),
        (_status(c.waiting("DependencyMissing", "x")), plan.State.PENDING),
        # the back-off is status.backoff's: a write held back by an error may replace the
        # reason (here DependencyMissing) and the task is still backing off ...
        (_status(c.waiting("DependencyMissing", "x"), uuid="ab", backoff=WAIT), plan.State.BACKOFF),
        # ... and a CrashLoopBackOff reason alone (the field lost or edited away) is not one
        (_status(c.backing_off(2, 10, 1), uuid="ab", exit_code=2), plan.State.PENDING),
    ],
    ids=[
        "none",
        "accepted",
        "preparing",
        "running",
        "succeeded",
        "failed",
        "backoff",
        "wait",
        "backoff-reason-replaced",
        "reason-without-field",
    ],
)
def test_recorded_state(status: dict[str, Any], state: plan.State | None) -> None:
    recorded = taskstate.recorded_from(status, accepted_uuid=None)
    assert recorded.state is state


def test_recorded_fields() -> None:
    status = _status(
        c.backing_off(2, 10, 1),
        uuid="ab",
        exit_code=2,
        finished_at=T0,
        restarts=1,
        restart_events_posted=1,
        backoff=WAIT,
    )
    assert status["backoff"] == {"step": 1, "restartAt": "2026-01-01T00:00:20Z"}
    assert status["restartEventsPosted"] == 1
    c.validate(status)
    recorded = taskstate.recorded_from(status, accepted_uuid="zz")
    assert recorded == plan.Recorded(
        state=plan.State.BACKOFF,
        generation=3,
        uuid="ab",
        exit_code=2,
        finished_at=T0,
        restarts=1,
        accepted_uuid="zz",
        backoff=plan.BackoffWait(step=1, restart_at=T0 + timedelta(seconds=20)),
    )
    assert taskstate.facts_from_status(status).restart_events_posted == 1


@pytest.mark.parametrize(
    "value",
    [None, "x", {"step": -1, "restartAt": "2026-01-01T00:00:20Z"}, {"step": 1}, {"step": "1"}],
)
def test_a_backoff_not_in_the_shape_written_is_ignored(value: object) -> None:
    status = {**_status(c.running("ab", None), uuid="ab"), "backoff": value}
    assert taskstate.facts_from_status(status).backoff is None


def test_describe_a_back_off_records_its_step_and_due_time() -> None:
    decision = plan.Decision(
        reason=plan.Reason.REPORT_EXIT,
        state=plan.State.BACKOFF,
        pod_uuid="ab",
        exit_code=2,
        finished_at=T0,
        restarts=1,
        backoff_step=2,
        restart_at=T0 + timedelta(seconds=40),
    )
    backoff = plan.Backoff(10, 300)
    summary, facts = taskstate.describe(
        decision, spec=SPEC, pod=None, previous={}, backoff=backoff, now=T0
    )
    assert summary.reason == c.CRASH_LOOP_BACK_OFF
    assert facts.backoff == c.BackoffFacts(step=2, restart_at=T0 + timedelta(seconds=40))
    # any other state writes no back-off (the merge patch then removes it)
    running = replace(decision, state=plan.State.RUNNING, reason=plan.Reason.ADOPT_RUNNING)
    _, facts = taskstate.describe(running, spec=SPEC, pod=None, previous={}, backoff=backoff)
    assert facts.backoff is None


@pytest.mark.parametrize(
    ("number", "uuid", "code", "late", "message"),
    [
        (
            2,
            "ab",
            3,
            False,
            "the pod exited with code 3; starting the pod again (restart 2): pod ab",
        ),
        (
            1,
            None,
            None,
            True,
            "starting the pod again (restart 1); announced late (the agent or the API was "
            "down when it was made)",
        ),
    ],
)
def test_restart_message(
    number: int, uuid: str | None, code: int | None, late: bool, message: str
) -> None:
    assert taskstate.restart_message(number, pod_uuid=uuid, exit_code=code, late=late) == message


SPEC = RktTaskSpec.model_validate(
    {
        "nodeName": "n1",
        "image": "example.com/web:1",
        "ports": [
            {"name": "http", "hostPort": 8080},
            {"name": "dns", "protocol": "UDP"},
            {"name": "admin", "hostPort": 9000, "hostIP": "127.0.0.1"},
        ],
    }
)


def test_port_entries() -> None:
    assert taskstate.port_entries(SPEC, {"http": 80, "dns": 53}) == [
        {"name": "http", "protocol": "TCP", "containerPort": 80, "hostPort": 8080},
        {"name": "dns", "protocol": "UDP", "containerPort": 53},
        {"name": "admin", "protocol": "TCP", "hostPort": 9000, "hostIP": "127.0.0.1"},
    ]
    host = SPEC.model_copy(update={"net": ["host"]})
    assert [set(e) for e in taskstate.port_entries(host, {})] == [{"name", "protocol"}] * 3


def _obs(uuid: str, **kw: Any) -> PodObservation:
    base: dict[str, Any] = {
        "identity": TaskIdentity("team", "web", "u-1", 3),
        "state": "running",
        "running": True,
        "finished": False,
        "exit_code": None,
        "ip": "10.1.0.2",
        "created_at": T0,
        "started_at": T0,
        "finished_at": None,
    }
    return PodObservation(uuid=uuid, **{**base, **kw})


BACKOFF = plan.Backoff(10, 300)


def test_describe_running_keeps_port_map_of_the_same_pod() -> None:
    previous = _status(c.running("ab", "10.1.0.2"), uuid="ab", port_map={"http": 80})
    decision = plan.Decision(reason=plan.Reason.WAIT, state=plan.State.RUNNING, pod_uuid="ab")
    summary, facts = taskstate.describe(
        decision, spec=SPEC, pod=_obs("ab"), previous=previous, backoff=BACKOFF
    )
    assert summary.reason == c.POD_RUNNING
    assert facts.port_map == {"http": 80}  # rkt list does not carry it; status did
    assert facts.ip == "10.1.0.2"
    # a different pod does not inherit it
    summary, facts = taskstate.describe(
        plan.Decision(reason=plan.Reason.ADOPT_RUNNING, state=plan.State.RUNNING, pod_uuid="cd"),
        spec=SPEC,
        pod=_obs("cd"),
        previous=previous,
        backoff=BACKOFF,
        fresh_port_map={"http": 81},
    )
    assert facts.port_map == {"http": 81}


def test_describe_running_keeps_the_start_first_recorded() -> None:
    """Real rkt shows a pod's address before its start time: the first Running status
    records when the agent saw it running, and a later pass that reads rkt's start time
    finds nothing to change (no second write for ``startedAt``)."""
    running = plan.Decision(reason=plan.Reason.WAIT, state=plan.State.RUNNING, pod_uuid="ab")
    seen = T0 + timedelta(seconds=3)
    _, first = taskstate.describe(
        running, spec=SPEC, pod=_obs("ab", started_at=None), previous={}, backoff=BACKOFF,
        now=seen,
    )  # fmt: skip
    assert first.started_at == seen
    previous = _status(c.running("ab", "10.1.0.2"), uuid="ab", started_at=seen)
    rkt_time = T0 + timedelta(seconds=2)
    _, later = taskstate.describe(
        running, spec=SPEC, pod=_obs("ab", started_at=rkt_time), previous=previous,
        backoff=BACKOFF, now=T0 + timedelta(seconds=8),
    )  # fmt: skip
    assert later.started_at == seen
    # rkt's own start time when the first Running status can carry it
    _, direct = taskstate.describe(
        running, spec=SPEC, pod=_obs("ab", started_at=rkt_time), previous={}, backoff=BACKOFF,
        now=seen,
    )  # fmt: skip
    assert direct.started_at == rkt_time
    # a pod not running yet gets no start time
    pending = plan.Decision(reason=plan.Reason.WAIT, state=plan.State.PENDING, pod_uuid="ab")
    _, facts = taskstate.describe(
        pending, spec=SPEC, pod=_obs("ab", started_at=None, running=False, state="prepared"),
        previous={}, backoff=BACKOFF, now=seen,
    )  # fmt: skip
    assert facts.started_at is None


def test_describe_exit_states() -> None:
    finished = T0 + timedelta(minutes=1)
    for state, reason in (
        (plan.State.SUCCEEDED, c.POD_SUCCEEDED),
        (plan.State.FAILED, c.POD_FAILED),
        (plan.State.BACKOFF, c.CRASH_LOOP_BACK_OFF),
    ):
        decision = plan.Decision(
            reason=plan.Reason.REPORT_EXIT,
            state=state,
            pod_uuid="ab",
            exit_code=0 if state is plan.State.SUCCEEDED else 1,
            finished_at=finished,
            restarts=2,
            backoff_step=2,
        )
        summary, facts = taskstate.describe(
            decision, spec=SPEC, pod=None, previous={}, backoff=BACKOFF
        )
        assert summary.reason == reason
        assert facts.finished_at == finished
        assert facts.ip is None
        assert facts.restarts == 2
    assert summary.message.startswith("back-off 40s")  # the step-2 delay, not time left
    lost = plan.Decision(reason=plan.Reason.POD_LOST, state=plan.State.FAILED, pod_uuid="ab")
    summary, _ = taskstate.describe(lost, spec=SPEC, pod=None, previous={}, backoff=BACKOFF)
    assert summary.reason == c.POD_LOST


def test_describe_exit_keeps_the_address_the_pod_had() -> None:
    # As a Pod's podIP, the address stays in status once the pod has ended.
    done = plan.Decision(
        reason=plan.Reason.REPORT_EXIT, state=plan.State.SUCCEEDED, pod_uuid="ab", exit_code=0
    )
    running = _status(c.running("ab", "10.1.0.2"), uuid="ab", ip="10.1.0.2")
    _, facts = taskstate.describe(done, spec=SPEC, pod=None, previous=running, backoff=BACKOFF)
    assert facts.ip == "10.1.0.2"
    ended = _obs("ab", state="exited", running=False, finished=True, ip="10.1.0.7")
    _, facts = taskstate.describe(done, spec=SPEC, pod=ended, previous={}, backoff=BACKOFF)
    assert facts.ip == "10.1.0.7"
    # ... but not the address of another, earlier pod
    _, facts = taskstate.describe(
        replace(done, pod_uuid="cd"), spec=SPEC, pod=None, previous=running, backoff=BACKOFF
    )
    assert facts.ip is None


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.name", "web"),
        ("metadata.namespace", "team"),
        ("metadata.uid", "u-1"),
        ("spec.nodeName", "n1"),
        ("metadata.labels['tier']", "gold"),
        ("metadata.annotations['note']", "hi"),
        ("metadata.labels['absent']", ""),
    ],
)
def test_field_value(path: str, value: str) -> None:
    assert envrefs.field_value(BODY, path) == value


def test_field_value_unsupported() -> None:
    with pytest.raises(SpecError):
        envrefs.field_value(BODY, "status.phase")


class Values:
    """A value source with a fixed content (the real one reads the API server)."""

    def __init__(self, secrets: dict[str, dict[str, str]], maps: dict[str, dict[str, str]]):
        self.secrets = secrets
        self.maps = maps

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        return self.secrets.get(name, {}).get(key)

    async def configmap_value(self, namespace: str, name: str, key: str) -> str | None:
        return self.maps.get(name, {}).get(key)


def _env(*items: dict[str, Any]) -> list[EnvVar]:
    return [EnvVar.model_validate(item) for item in items]


async def test_resolve_env_marks_secrets_and_skips_optional() -> None:
    env = _env(
        {"name": "A", "value": "1"},
        {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "O", "valueFrom": {"secretKeyRef": {"name": "x", "key": "k", "optional": True}}},
        {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "m", "key": "k"}}},
        {"name": "F", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    )
    source = Values({"s": {"k": "hush"}}, {"m": {"k": "v"}})
    resolved = await envrefs.resolve_env(env, BODY, source=source)
    assert [(v.name, v.value, v.secret) for v in resolved] == [
        # The task environment first (spec.env can override it: a later name wins).
        ("RKT_ALLOC_DIR", "/alloc", False),
        ("RKT_TASK_DIR", "/local", False),
        ("RKT_SECRETS_DIR", "/secrets", False),
        ("RKT_TASK_NAME", "web", False),
        ("RKT_TASK_NAMESPACE", "team", False),
        ("RKT_TASK_UID", "u-1", False),
        ("RKT_NODE_NAME", str(BODY["spec"]["nodeName"]), False),
        ("A", "1", False),
        ("S", "hush", True),
        ("C", "v", False),
        ("F", "web", False),
    ]


async def test_resolve_env_missing_names_object_not_value() -> None:
    env = _env({"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})
    with pytest.raises(DependencyError) as info:
        await envrefs.resolve_env(env, BODY, source=Values({"s": {"other": "x"}}, {}))
    assert str(info.value) == "spec.env[0] (S): Secret team/s or its key 'k' not found"


def _task(name: str, node: str, *, deleting: bool, finalizers: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": "ns", "name": name, "finalizers": finalizers}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": node}}


def test_find_orphans() -> None:
    tasks = [
        _task("b-lost", "gone", deleting=True, finalizers=[FINALIZER]),
        _task("a-idle", "gone", deleting=False, finalizers=[FINALIZER]),
        _task("held", "here", deleting=True, finalizers=[FINALIZER]),
        _task("other", "gone", deleting=True, finalizers=["someone.else/keep"]),
        {"metadata": {"namespace": "ns", "name": "unbound"}, "spec": {}},
    ]
    found = orphans.find_orphans(tasks, {"here"})
    assert [(o.name, o.deleting) for o in found] == [
        ("a-idle", False),
        ("b-lost", True),
        ("other", False),
    ]
