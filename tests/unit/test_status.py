"""Table tests of the status builders (rkt_operator.reconcile.status), including how kstatus
would read each situation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rkt_operator.reconcile import status as c

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
REASON_PATTERN = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


def kstatus(obj_generation: int, status: Mapping[str, Any]) -> str:
    """kstatus' generic rules (kopf-and-gitops.md §5), for a CR with no deletionTimestamp."""
    observed = status.get("observedGeneration")
    if observed is not None and observed != obj_generation:
        return "InProgress"
    if c.is_true(status, c.RECONCILING):
        return "InProgress"
    if c.is_true(status, c.STALLED):
        return "Failed"
    ready = c.condition(status, c.READY)
    if ready is not None:
        return "Current" if ready["status"] == "True" else "InProgress"
    return "Current"


SITUATIONS = [
    ("accepted", c.starting(), c.PENDING, "InProgress"),
    ("preparing", c.preparing("0a1b2c3d"), c.PREPARING, "InProgress"),
    ("terminating", c.terminating("0a1b2c3d"), c.TERMINATING, "InProgress"),
    ("replacing", c.starting("stopping the old pod", replacing=True), c.PENDING, "InProgress"),
    ("running", c.running("abc", "172.16.28.2"), c.RUNNING, "Current"),
    ("succeeded", c.succeeded("abc"), c.SUCCEEDED, "Current"),
    ("failed", c.failed("abc", 3), c.FAILED, "Failed"),
    ("lost", c.failed("abc", None, lost=True), c.FAILED, "Failed"),
    ("backing off", c.backing_off(1, 20, 2), c.PENDING, "InProgress"),
    ("invalid", c.stalled(c.INVALID_SPEC, "bad", field="spec.image"), c.FAILED, "Failed"),
    ("missing secret", c.waiting(c.DEPENDENCY_MISSING, "secret x"), c.PENDING, "InProgress"),
]


@pytest.mark.parametrize(
    ("summary", "phase", "health"), [s[1:] for s in SITUATIONS], ids=[s[0] for s in SITUATIONS]
)
def test_each_situation_reads_right_for_kstatus(
    summary: c.Summary, phase: str, health: str
) -> None:
    status = c.build_status(summary, c.PodFacts(), previous=None, generation=4, now=T0)
    c.validate(status)  # what the API model (and so the CRD) accepts
    assert status["phase"] == phase
    assert status["observedGeneration"] == 4
    assert [x["type"] for x in status["conditions"]] == ["Ready", "Reconciling", "Stalled"]
    for cond in status["conditions"]:
        assert REASON_PATTERN.match(cond["reason"]), cond
        assert cond["status"] in ("True", "False")
        assert cond["observedGeneration"] == 4
        assert cond["lastTransitionTime"] == "2026-01-01T12:00:00Z"
        assert cond["message"]
    assert kstatus(4, status) == health
    # a newer generation the agent has not seen yet is never Current
    assert kstatus(5, status) == "InProgress"


def test_messages_are_readable() -> None:
    assert c.failed("abc", 3).message == "pod abc failed with exit code 3"
    assert c.backing_off(1, 20, 1).message == (
        "back-off 20s restarting the pod (it exited with exit code 1; 1 restart so far)"
    )
    assert c.backing_off(1, 20, 1).reason == "CrashLoopBackOff"
    assert c.stalled("InvalidSpec", "must be set", field="spec.image").message == (
        "spec.image: must be set"
    )
    assert c.stalled("InvalidSpec", "spec.image: must be set", field="spec.image").message == (
        "spec.image: must be set"
    )


def test_transition_time_changes_only_when_status_flips() -> None:
    first = c.build_status(c.starting(), c.PodFacts(), previous=None, generation=1, now=T0)
    second = c.build_status(
        c.running("abc", None), c.PodFacts(uuid="abc"), previous=first, generation=1, now=T1
    )
    by_type = {x["type"]: x for x in second["conditions"]}
    assert by_type["Ready"]["lastTransitionTime"] == "2026-01-01T12:05:00Z"  # False -> True
    assert by_type["Reconciling"]["lastTransitionTime"] == "2026-01-01T12:05:00Z"  # True -> False
    assert by_type["Stalled"]["lastTransitionTime"] == "2026-01-01T12:00:00Z"  # stays False
    assert by_type["Stalled"]["reason"] == "PodRunning"


def test_foreign_conditions_are_kept() -> None:
    previous = {"conditions": [{"type": "Example", "status": "True", "reason": "Other"}]}
    status = c.build_status(c.starting(), c.PodFacts(), previous=previous, generation=1, now=T0)
    assert status["conditions"][-1] == previous["conditions"][0]


def test_pod_facts_are_rendered() -> None:
    facts = c.PodFacts(
        uuid="abc",
        ip="172.16.28.2",
        port_map={"http": 8080},
        ports=[{"name": "http", "containerPort": 8080, "hostPort": 18080, "protocol": "TCP"}],
        started_at=T0,
        finished_at=None,
        exit_code=None,
        restarts=2,
    )
    status = c.build_status(
        c.running("abc", "172.16.28.2"), facts, previous=None, generation=1, now=T0
    )
    assert status["uuid"] == "abc"
    assert status["ip"] == "172.16.28.2"
    assert status["portMap"] == {"http": 8080}
    assert status["ports"] == [
        {"name": "http", "containerPort": 8080, "hostPort": 18080, "protocol": "TCP"}
    ]
    assert status["startedAt"] == "2026-01-01T12:00:00Z"
    assert status["restarts"] == 2
    assert "finishedAt" not in status
    assert "exitCode" not in status
    assert "nodeName" not in c.build_status(
        c.starting(), c.PodFacts(), previous=None, generation=1, now=T0
    )


def test_exit_code_zero_is_kept() -> None:
    status = c.build_status(
        c.succeeded("abc"), c.PodFacts(uuid="abc", exit_code=0), previous=None, generation=1, now=T0
    )
    assert status["exitCode"] == 0


def test_status_patch_only_changes() -> None:
    current = c.build_status(
        c.running("abc", "10.0.0.2"),
        c.PodFacts(uuid="abc", ip="10.0.0.2", started_at=T0),
        previous=None,
        generation=1,
        now=T0,
    )
    same = c.build_status(
        c.running("abc", "10.0.0.2"),
        c.PodFacts(uuid="abc", ip="10.0.0.2", started_at=T0),
        previous=current,
        generation=1,
        now=T1,
    )
    assert c.status_patch(current, same) == {}

    done = c.build_status(
        c.succeeded("abc"),
        c.PodFacts(uuid="abc", started_at=T0, finished_at=T1, exit_code=0),
        previous=current,
        generation=1,
        now=T1,
    )
    patch = c.status_patch({**current, "foreign": 1}, done)
    assert patch["ip"] is None  # dropped: merge-patch deletion
    assert patch["phase"] == "Succeeded"
    assert patch["exitCode"] == 0
    assert patch["finishedAt"] == "2026-01-01T12:05:00Z"
    assert len(patch["conditions"]) == 3  # always the whole list
    assert "foreign" not in patch
    assert "uuid" not in patch
    assert "startedAt" not in patch


def test_status_patch_first_write() -> None:
    desired = c.build_status(c.starting(), c.PodFacts(), previous=None, generation=1, now=T0)
    assert c.status_patch(None, desired) == desired


def test_message_is_clipped_and_single_line() -> None:
    summary = c.stalled("PrepareFailed", "line one\nline two " + "x" * 5000)
    status = c.build_status(summary, c.PodFacts(), previous=None, generation=1, now=T0)
    assert len(status["message"]) == c.MAX_MESSAGE
    assert "\n" not in status["message"]
    assert status["message"].startswith("line one line two x")


def test_time_roundtrip_and_garbage() -> None:
    assert c.parse_time(c.format_time(T1)) == T1
    assert c.parse_time("2026-01-01T12:00:00+02:00") == T0 - timedelta(hours=2)
    assert c.parse_time("yesterday") is None
    assert c.parse_time(None) is None
    assert c.parse_time(17) is None
    assert c.format_time(datetime(2026, 1, 1, 12, 0, 0)) == "2026-01-01T12:00:00Z"


def _status(summary: c.Summary, generation: int, uuid: str | None = "abc") -> dict[str, Any]:
    return c.build_status(
        summary, c.PodFacts(uuid=uuid), previous=None, generation=generation, now=T0
    )


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        pytest.param(None, 1, None, id="no status"),
        pytest.param(_status(c.running("abc", None), 2), 2, "abc", id="settled on this gen"),
        pytest.param(_status(c.running("abc", None), 1), 2, None, id="settled on an older gen"),
        pytest.param(_status(c.starting(replacing=True), 2), 2, None, id="still replacing"),
        pytest.param(_status(c.succeeded("abc"), 2), 2, "abc", id="succeeded"),
        pytest.param(_status(c.failed("abc", 3), 2), 2, "abc", id="failed run is an outcome"),
        pytest.param(_status(c.stalled(c.INVALID_SPEC, "x"), 2), 2, None, id="refused spec is not"),
        pytest.param(_status(c.running("abc", None), 2, uuid=None), 2, None, id="no uuid"),
    ],
)
def test_settled_uuid(status: dict[str, Any] | None, generation: int, expected: str | None) -> None:
    assert c.settled_uuid(status, generation) == expected


def test_stalled_for_and_first_write() -> None:
    invalid = _status(c.stalled(c.INVALID_SPEC, "x"), 3)
    assert c.stalled_for(invalid, 3)
    assert not c.stalled_for(invalid, 4)
    assert not c.stalled_for(_status(c.failed("abc", 1), 3), 3)
    assert c.needs_first_write(None, 1)
    assert c.needs_first_write(invalid, 4)
    assert not c.needs_first_write(invalid, 3)


FAILING = c.StartFailureFacts(
    reason="PrepareFailed", message="rkt prepare failed: no image", attempts=3, since=T0, last=T1
)


def test_a_failing_start_is_in_progress_until_its_deadline_then_failed() -> None:
    retry_at = T1 + timedelta(seconds=40)
    trying = c.start_failing(FAILING, retry_at=retry_at, stalled=False, deadline_seconds=600)
    assert (trying.phase, trying.reason, trying.reconciling, trying.stalled) == (
        c.PENDING, "PrepareFailed", True, False
    )  # fmt: skip
    assert trying.message == (
        "rkt prepare failed: no image; 3 failed starts, next try at 2026-01-01T12:05:40Z"
    )
    assert kstatus(2, _status(trying, 2)) == "InProgress"

    stalled = c.start_failing(FAILING, retry_at=retry_at, stalled=True, deadline_seconds=600)
    assert (stalled.phase, stalled.reason, stalled.reconciling, stalled.stalled) == (
        c.PENDING, c.PROGRESS_DEADLINE_EXCEEDED, False, True
    )  # fmt: skip
    assert "within spec.progressDeadlineSeconds (600s): PrepareFailed:" in stalled.message
    assert "still retrying" in stalled.message
    status = _status(stalled, 2, uuid="abc")
    assert kstatus(2, status) == "Failed"
    # still acted on (not a refusal), and no pod is settled on
    assert not c.stalled_for(status, 2)
    assert c.retrying_stalled(status, 2)
    assert c.settled_uuid(status, 2) is None


def test_the_start_failure_is_in_the_status_and_valid() -> None:
    status = c.build_status(
        c.start_failing(FAILING, retry_at=T1, stalled=False, deadline_seconds=60),
        c.PodFacts(restarts=1, start_failure=FAILING),
        previous=None,
        generation=1,
        now=T1,
    )
    c.validate(status)
    assert status["startFailure"] == {
        "reason": "PrepareFailed",
        "message": "rkt prepare failed: no image",
        "attempts": 3,
        "since": "2026-01-01T12:00:00Z",
        "last": "2026-01-01T12:05:00Z",
        "restart": False,
    }
    cleared = c.build_status(c.preparing("abc"), c.PodFacts(uuid="abc"), previous=status,
                             generation=1, now=T1)  # fmt: skip
    assert c.status_patch(status, cleared)["startFailure"] is None
