"""The shipped Argo CD health check judges RktTask objects in every state as kstatus would.

The script runs in Lua 5.1 (lupa's ``lua51`` runtime), the language version of the
gopher-lua interpreter Argo CD embeds, with ``obj`` bound the way Argo CD binds it: the
object's JSON turned into nested tables, arrays indexed from 1 (``chartlib.argocd_health``).
The objects here are hand-made for every state; ``test_agent_with_chart_rbac.py`` also
judges objects written by the real agent.
"""

from __future__ import annotations

import copy
from typing import Any

import lupa.lua51 as lua51
import pytest
from chartlib import argocd_health

health = argocd_health


def cond(kind: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 2,
    }


def task(status: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "rktoperator.io/v1alpha1",
        "kind": "RktTask",
        "metadata": {"name": "web", "namespace": "default", "generation": 2, **metadata},
        "spec": {"nodeName": "node-a", "image": "example.com/kv-server:1.0"},
    }
    if status is not None:
        obj["status"] = status
    return obj


RUNNING: dict[str, Any] = {
    "observedGeneration": 2,
    "phase": "Running",
    "uuid": "6d0d9608-a744-4333-be21-942145a97a5a",
    "ip": "172.16.28.7",
    "conditions": [
        cond("Ready", "True", "PodRunning", "pod 6d0d9608 is running"),
        cond("Reconciling", "False", "Done"),
        cond("Stalled", "False", "Healthy"),
    ],
}
STARTING: dict[str, Any] = {
    "observedGeneration": 2,
    "phase": "Pending",
    "conditions": [
        cond("Ready", "False", "Starting"),
        cond("Reconciling", "True", "Preparing", "fetching example.com/kv-server:1.0"),
        cond("Stalled", "False", "Healthy"),
    ],
}
STALLED: dict[str, Any] = {
    "observedGeneration": 2,
    "phase": "Pending",
    "conditions": [
        cond("Ready", "False", "InvalidSpec"),
        cond("Reconciling", "False", "InvalidSpec"),
        cond("Stalled", "True", "InvalidSpec", "spec.ports[0]: no port named http"),
    ],
}
FAILED: dict[str, Any] = {
    "observedGeneration": 2,
    "phase": "Failed",
    "exitCode": 3,
    "conditions": [
        cond("Ready", "False", "PodExited", "exited with code 3"),
        cond("Reconciling", "False", "Done"),
        cond("Stalled", "False", "Healthy"),
    ],
}
SUCCEEDED: dict[str, Any] = {
    "observedGeneration": 2,
    "phase": "Succeeded",
    "exitCode": 0,
    "conditions": [
        cond("Ready", "False", "PodSucceeded", "exited with code 0"),
        cond("Reconciling", "False", "Done"),
        cond("Stalled", "False", "Healthy"),
    ],
}
CRASH_BACKOFF: dict[str, Any] = {
    "observedGeneration": 2,
    "phase": "Running",
    "restarts": 4,
    "conditions": [
        cond("Ready", "False", "CrashLoopBackOff", "restarting in 80s"),
        cond("Reconciling", "True", "CrashLoopBackOff", "restart 4 in 80s"),
        cond("Stalled", "False", "Healthy"),
    ],
}

# Starts failing for a cause that can heal: retried, Progressing until the progress deadline,
# then Degraded while the agent keeps retrying (issue 16).
START_FAILING: dict[str, Any] = {
    "observedGeneration": 2,
    "phase": "Pending",
    "conditions": [
        cond("Ready", "False", "PrepareFailed"),
        cond("Reconciling", "True", "PrepareFailed", "image not found; 2 failed starts"),
        cond("Stalled", "False", "PrepareFailed"),
    ],
}
PAST_DEADLINE: dict[str, Any] = {
    "observedGeneration": 2,
    "phase": "Pending",
    "conditions": [
        cond("Ready", "False", "ProgressDeadlineExceeded"),
        cond("Reconciling", "False", "ProgressDeadlineExceeded"),
        cond("Stalled", "True", "ProgressDeadlineExceeded", "no start succeeded within 600s"),
    ],
}


@pytest.mark.parametrize(
    ("obj", "expected", "in_message"),
    [
        pytest.param(task(START_FAILING), "Progressing", "2 failed starts", id="start-failing"),
        pytest.param(task(PAST_DEADLINE), "Degraded", "within 600s", id="past-deadline"),
        pytest.param(task(RUNNING), "Healthy", "PodRunning: pod 6d0d9608", id="running"),
        pytest.param(task(STARTING), "Progressing", "fetching", id="starting"),
        pytest.param(task(STALLED), "Degraded", "no port named http", id="stalled"),
        pytest.param(task(FAILED), "Degraded", "exit code 3", id="failed"),
        pytest.param(task(SUCCEEDED), "Healthy", "finished", id="succeeded"),
        pytest.param(task(CRASH_BACKOFF), "Progressing", "restart 4", id="crash-backoff"),
        pytest.param(task(None), "Progressing", "agent", id="no-status"),
        pytest.param(task({}), "Progressing", "agent", id="empty-status"),
        pytest.param(
            task(RUNNING, generation=3), "Progressing", "generation 3", id="outdated-generation"
        ),
        pytest.param(
            task(RUNNING, deletionTimestamp="2026-01-01T00:00:00Z"),
            "Progressing",
            "deletion",
            id="deleting",
        ),
        pytest.param(
            task(FAILED, deletionTimestamp="2026-01-01T00:00:00Z"),
            "Progressing",
            "deletion",
            id="deleting-failed",
        ),
    ],
)
def test_health_of_every_state(obj: dict[str, Any], expected: str, in_message: str) -> None:
    status, message = health(obj)
    assert status == expected
    assert in_message in message


def test_outdated_generation_hides_a_stale_failure() -> None:
    """A Stalled condition about generation 2 says nothing about the new generation 3."""
    assert health(task(STALLED, generation=3))[0] == "Progressing"


def test_ready_false_without_reconciling_is_progressing_not_healthy() -> None:
    status = copy.deepcopy(RUNNING)
    status["conditions"][0] = cond("Ready", "False", "NetworkPending", "no IP yet")
    assert health(task(status)) == ("Progressing", "NetworkPending: no IP yet")


def test_stalled_wins_over_ready() -> None:
    status = copy.deepcopy(RUNNING)
    status["conditions"][2] = cond("Stalled", "True", "SecretMissing", "secret db has no key pw")
    assert health(task(status)) == ("Degraded", "SecretMissing: secret db has no key pw")


def test_status_without_observed_generation_is_judged_by_conditions() -> None:
    """kstatus skips the generation check when the field is absent; so does the script."""
    status = copy.deepcopy(RUNNING)
    del status["observedGeneration"]
    assert health(task(status))[0] == "Healthy"


def test_runs_on_lua_51() -> None:
    """The runtime used above really is Lua 5.1, the dialect gopher-lua implements."""
    assert lua51.LuaRuntime().eval("_VERSION") == "Lua 5.1"
