"""Exec probes against rkt-sim: ``Executor.exec`` (rkt enter: exit code, merged output,
deadline) and the ``Prober`` running due probes in a real pod and turning them into
verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rkt_operator import errors
from rkt_operator.executor.service import Executor
from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.reconcile.probeplan import Verdict
from rkt_operator.reconcile.prober import Prober
from rkt_operator.rkt.types import PodObservation
from rkt_operator.settings import Settings
from simrkt import identity, make_plan

UID = identity().uid


async def started(executor: Executor, settings: Settings, image: Path) -> PodObservation:
    observed = await executor.ensure_started(make_plan(settings, identity(), image))
    assert observed.running
    return observed


def spec(**probes: Any) -> RktTaskSpec:
    return RktTaskSpec.model_validate({"nodeName": "node-a", "image": "example.com/a", **probes})


def check(command: str, **fields: Any) -> dict[str, Any]:
    # generous timeout: rkt-sim is a Python program on a shared machine
    return {"exec": {"command": ["/bin/sh", "-c", command]}, "timeoutSeconds": 60, **fields}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def test_exec_reports_exit_code_and_output_and_honours_the_deadline(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    pod = await started(executor, settings, images["sleeper"])
    done = await executor.exec(
        pod.uuid, ["/bin/sh", "-c", "echo out; echo err >&2; exit 4"], deadline=60
    )
    assert done.exit_code == 4
    assert "out\n" in done.output
    assert "err\n" in done.output
    with pytest.raises(errors.RktTimeout):
        await executor.exec(pod.uuid, ["/bin/sleep", "30"], deadline=1)
    await executor.stop(pod.uuid, kill_timeout=10)
    with pytest.raises(errors.PodWrongState):
        await executor.exec(pod.uuid, ["/bin/true"], deadline=60)


async def test_readiness_follows_a_file_in_the_task_dir(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    pod = await started(executor, settings, images["sleeper"])
    local = make_plan(settings, identity(), images["sleeper"]).dirs.local
    clock = Clock()
    prober = Prober(executor, clock=clock)
    task = spec(readinessProbe=check("cat /local/ready", periodSeconds=5, failureThreshold=2))
    prober.watch(UID, pod.uuid, task, clock.now)
    assert prober.readiness(UID, pod.uuid) == Verdict(None)

    assert await prober.run_due(UID) is False  # one failure of two
    assert await prober.run_due(UID) is False  # not due again before the period
    clock.advance(5)
    assert await prober.run_due(UID) is True
    verdict = prober.readiness(UID, pod.uuid)
    assert verdict.ok is False
    assert verdict.failures == 2
    assert verdict.detail.startswith("exit code 1: ")
    assert "/local/ready" in verdict.detail  # cat's complaint, from inside the pod

    (local / "ready").write_text("yes")
    clock.advance(5)
    assert await prober.run_due(UID) is True
    assert prober.readiness(UID, pod.uuid) == Verdict(True, "exit code 0: yes")
    # another pod of the task knows no verdict
    assert prober.readiness(UID, "0badc0de-0000-4000-8000-000000000000") == Verdict(None)


async def test_liveness_failure_timeout_and_a_stopped_pod(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    pod = await started(executor, settings, images["sleeper"])
    clock = Clock()
    prober = Prober(executor, clock=clock)
    slow = check("sleep 30", timeoutSeconds=1, failureThreshold=1)
    prober.watch(UID, pod.uuid, spec(livenessProbe=slow), clock.now)
    assert prober.liveness_failure(UID, pod.uuid) is None
    assert await prober.run_due(UID) is True
    assert prober.liveness_failure(UID, pod.uuid) == Verdict(False, "timed out after 1s", 1)

    # A new definition keeps the verdict; a stopped pod gives no result at all.
    prober.watch(UID, pod.uuid, spec(livenessProbe=check("true", failureThreshold=1)), clock.now)
    await executor.stop(pod.uuid, kill_timeout=10)
    clock.advance(60)
    assert await prober.run_due(UID) is False
    assert prober.liveness_failure(UID, pod.uuid) is not None

    prober.mark_killed(UID, pod.uuid, Verdict(False, "timed out after 1s", 1))
    assert list(prober.killed(UID)) == [pod.uuid]
    prober.retain(UID, [pod.uuid])
    assert list(prober.killed(UID)) == [pod.uuid]
    prober.retain(UID, [])
    assert prober.killed(UID) == {}
    prober.unwatch(UID)
    assert prober.liveness_failure(UID, pod.uuid) is None
    assert await prober.run_due(UID) is False
