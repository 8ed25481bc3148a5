"""Failed starts that can heal, and counts that survive a crash, in process (issue 16).

The real ``Reconciler`` and ``Executor`` on rkt-sim with its fault injection, a recording
fake of the status API and a clock the test moves: a start that rkt refuses or that hangs
is tried again with the restart back-off while the status says why, the task stalls after
its progress deadline and still recovers by itself; a restart whose start failed is counted
once, when it is finally made; and a restart prepared by an agent that died before it
recorded the pod is counted by the next agent from the pod's own stamp.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from recording import Clock, RecordingApi

from rkt_operator.executor.service import Executor
from rkt_operator.reconcile.reconciler import Reconciler
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.types import PodStamp
from rkt_operator.settings import Settings
from simrkt import make_settings, set_faults

UID = "8d3f6c1e-1111-4222-8333-944455556677"
PREPARE_REFUSED = {
    "action": "fail",
    "stderr": "prepare: error setting up stage0: lock held by another process",
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # a short rkt deadline: a hanging prepare is killed after it
    return make_settings(tmp_path, resync_interval_seconds=3600.0, rkt_timeout_seconds=3.0)


@pytest.fixture
def api() -> RecordingApi:
    return RecordingApi()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def prepares(settings: Settings) -> list[str]:
    """The prepare faults not yet consumed (what rkt-sim still has to refuse)."""
    path = settings.rkt_dir / ".sim-faults.json"
    return list(json.loads(path.read_text()).get("prepare", [])) if path.exists() else []


async def test_a_transient_prepare_failure_heals_without_a_spec_change(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    set_faults(settings, {"prepare": [{**PREPARE_REFUSED, "times": 2}]})
    loop = Reconciler(settings=settings, executor=executor, api=api, clock=clock)
    api.create("web", images["sleeper"], uid=UID, restartPolicy="Always")

    first = await loop.reconcile(api.get("web"))

    assert first.error is not None
    assert first.error.reason == "PrepareFailed"
    status = api.get("web")["status"]
    assert status["phase"] == "Pending"
    reconciling = condition(status, "Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "PrepareFailed")
    assert "lock held by another process" in reconciling["message"]
    assert "1 failed start, next try at" in reconciling["message"]
    assert condition(status, "Stalled")["status"] == "False"
    assert status["startFailure"]["attempts"] == 1
    assert [e.reason for e in first.events if e.type == "Warning"] == ["PrepareFailed"]
    assert first.requeue_after == pytest.approx(settings.restart_backoff_seconds)

    # Not due yet: no prepare, no write.
    clock.advance(settings.restart_backoff_seconds / 2)
    idle = await loop.reconcile(api.get("web"))
    assert (idle.writes, idle.error) == (0, None)
    assert len(prepares(settings)) == 1  # the second refusal is still armed

    clock.advance(settings.restart_backoff_seconds / 2)
    second = await loop.reconcile(api.get("web"))
    assert second.error is not None
    assert api.get("web")["status"]["startFailure"]["attempts"] == 2
    assert second.requeue_after == pytest.approx(2 * settings.restart_backoff_seconds)
    assert prepares(settings) == []

    clock.advance(2 * settings.restart_backoff_seconds)
    healed = await loop.reconcile(api.get("web"))

    assert healed.error is None
    status = api.get("web")["status"]
    assert status["phase"] == "Running"
    assert "startFailure" not in status
    assert status["restarts"] == 0  # a start that never made a pod is no restart
    assert condition(status, "Reconciling")["status"] == "False"
    assert [p.uuid for p in await executor.pods_for(UID) if p.running] == [status["uuid"]]


async def test_past_its_progress_deadline_the_task_stalls_and_still_recovers(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    set_faults(settings, {"prepare": [{**PREPARE_REFUSED, "times": -1}]})
    loop = Reconciler(settings=settings, executor=executor, api=api, clock=clock)
    api.create("web", images["sleeper"], uid=UID, progressDeadlineSeconds=60)

    await loop.reconcile(api.get("web"))
    for _ in range(6):  # 10, 20, 40, 80 s... each try is due
        clock.advance(settings.restart_backoff_max_seconds)
        await loop.reconcile(api.get("web"))

    status = api.get("web")["status"]
    stalled = condition(status, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "ProgressDeadlineExceeded")
    assert "PrepareFailed" in stalled["message"]
    assert "still retrying" in stalled["message"]
    assert condition(status, "Reconciling")["status"] == "False"  # kstatus: Failed
    assert status["phase"] == "Pending"
    assert status["startFailure"]["attempts"] == 7

    (settings.rkt_dir / ".sim-faults.json").unlink()  # the cause goes away
    clock.advance(settings.restart_backoff_max_seconds)
    healed = await loop.reconcile(api.get("web"))

    assert healed.error is None
    status = api.get("web")["status"]
    assert status["phase"] == "Running"
    assert condition(status, "Stalled")["status"] == "False"
    assert condition(status, "Ready")["status"] == "True"
    assert "startFailure" not in status


async def test_a_hanging_prepare_is_killed_and_tried_again(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    set_faults(settings, {"prepare": [{"action": "hang", "seconds": 60}]})
    loop = Reconciler(settings=settings, executor=executor, api=api, clock=clock)
    api.create("web", images["sleeper"], uid=UID)

    hung = await loop.reconcile(api.get("web"))

    assert hung.error is not None
    assert hung.error.reason == "RktTimeout"
    assert condition(api.get("web")["status"], "Reconciling")["reason"] == "RktTimeout"
    clock.advance(settings.restart_backoff_seconds)
    healed = await loop.reconcile(api.get("web"))
    assert healed.error is None
    assert api.get("web")["status"]["phase"] == "Running"
    assert len([p for p in await executor.pods_for(UID) if p.live]) == 1


async def test_a_missing_secret_is_waited_for_with_the_back_off(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    loop = Reconciler(settings=settings, executor=executor, api=api, clock=clock)
    api.create("web", images["sleeper"], uid=UID, env=env)

    missing = await loop.reconcile(api.get("web"))

    assert missing.error is not None
    assert missing.error.reason == "DependencyMissing"
    assert api.get("web")["status"]["startFailure"]["reason"] == "DependencyMissing"
    api.secrets[("default", "creds", "token")] = "s3cr3t-value"
    assert (await loop.reconcile(api.get("web"))).writes == 0  # its back-off first
    clock.advance(settings.restart_backoff_seconds)
    healed = await loop.reconcile(api.get("web"))
    assert healed.error is None
    status = api.get("web")["status"]
    assert status["phase"] == "Running"
    assert "s3cr3t-value" not in repr(api.patches)


async def in_back_off(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> tuple[Reconciler, str]:
    """An Always task whose first pod ran and exited: its status says CrashLoopBackOff.
    Returns the loop and the exited pod's UUID."""
    loop = Reconciler(settings=settings, executor=executor, api=api, clock=clock)
    api.create("web", images["sleeper"], uid=UID, restartPolicy="Always")
    await loop.reconcile(api.get("web"))
    first = api.get("web")["status"]["uuid"]
    await executor.stop(first, kill_timeout=1)  # the app exits
    clock.catch_up()
    await loop.reconcile(api.get("web"))
    assert condition(api.get("web")["status"], "Reconciling")["reason"] == "CrashLoopBackOff"
    return loop, first


async def test_a_restart_whose_start_failed_is_counted_once_when_it_is_made(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    loop, first = await in_back_off(settings, executor, api, clock, images)
    set_faults(settings, {"prepare": [{**PREPARE_REFUSED, "times": 1}]})
    clock.advance(settings.restart_backoff_seconds)

    failed = await loop.reconcile(api.get("web"))  # the old pod goes, the new one fails

    assert failed.error is not None
    status = api.get("web")["status"]
    assert status["restarts"] == 0
    assert status["startFailure"]["restart"] is True
    assert [e for e in failed.events if e.reason == "Restarting"] == []
    clock.advance(settings.restart_backoff_seconds)

    made = await loop.reconcile(api.get("web"))

    assert made.error is None
    status = api.get("web")["status"]
    assert (status["phase"], status["restarts"]) == ("Running", 1)
    assert status["uuid"] != first
    restarting = [e for e in made.events if e.reason == "Restarting"]
    assert len(restarting) == 1
    assert "restart 1" in restarting[0].message


async def test_a_failed_observation_during_the_back_off_does_not_lose_the_restart(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    loop, first = await in_back_off(settings, executor, api, clock, images)
    set_faults(settings, {"list": [{"action": "garbage", "times": 1}]})
    loop.pods.invalidate()

    held = await loop.reconcile(api.get("web"))  # rkt's listing is garbled this once

    assert held.error is not None
    status = api.get("web")["status"]
    assert condition(status, "Reconciling")["reason"] == "CrashLoopBackOff"
    clock.advance(settings.restart_backoff_seconds)

    made = await loop.reconcile(api.get("web"))

    assert made.error is None
    status = api.get("web")["status"]
    assert (status["phase"], status["restarts"]) == ("Running", 1)
    assert status["uuid"] != first
    assert [e.reason for e in made.events].count("Restarting") == 1


class ApiDown(Exception):
    """The API went away (or the agent died) at the write that records a new pod."""


async def test_a_restart_prepared_by_an_agent_that_died_before_recording_it_is_counted(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    loop = Reconciler(settings=settings, executor=executor, api=api, clock=clock)
    api.create("web", images["sleeper"], uid=UID, restartPolicy="Always")
    await loop.reconcile(api.get("web"))
    for restart in (1, 2):  # two ordinary restarts: restarts 2, back-off step 2
        await executor.stop(api.get("web")["status"]["uuid"], kill_timeout=1)
        clock.catch_up()
        await loop.reconcile(api.get("web"))  # CrashLoopBackOff
        clock.advance(settings.restart_backoff_max_seconds)
        await loop.reconcile(api.get("web"))
        assert api.get("web")["status"]["restarts"] == restart
    old = api.get("web")["status"]["uuid"]
    await executor.stop(old, kill_timeout=1)  # restart 3 is due at once on this clock
    loop.pods.invalidate()  # as the resync's list would have expired

    real_patch = api.patch_task_status

    async def dies_at_the_write_naming_the_new_pod(namespace: str, name: str, patch: Any) -> Any:
        if patch.get("uuid") not in (None, old):
            raise ApiDown("connection refused")
        return await real_patch(namespace, name, patch)

    api.patch_task_status = dies_at_the_write_naming_the_new_pod  # type: ignore[method-assign]
    with pytest.raises(ApiDown):
        await loop.reconcile(api.get("web"))  # old pod removed, new one started, not recorded
    api.patch_task_status = real_patch  # type: ignore[method-assign]
    status = api.get("web")["status"]
    assert (status["uuid"], status["restarts"]) == (old, 2)  # what the crash left
    assert await executor.observe(old) is None  # the failed pod is gone

    # A new agent: nothing in memory, only the status and what rkt reports.
    fresh = Executor(settings=settings, rkt=RktCli(settings))
    again = Reconciler(settings=settings, executor=fresh, api=api, clock=clock)
    out = await again.reconcile(api.get("web"))

    assert out.error is None
    status = api.get("web")["status"]
    assert (status["phase"], status["restarts"]) == ("Running", 3)
    assert status["uuid"] != old
    # Restart 3's event was posted before the write that died; the next agent posts it
    # again under the same name (found, not doubled) and records it.
    assert status["restartEventsPosted"] == 3
    restarting = api.posted("web", "Restarting")
    assert len(restarting) == 3
    assert "restart 3" in restarting[-1]
    assert [e for e in out.events if e.reason == "Restarting"] == []
    live = [p for p in await fresh.pods_for(UID) if p.live]
    assert [p.uuid for p in live] == [status["uuid"]]
    # the restart count and back-off step it was started with, for the next agent
    assert live[0].stamp == PodStamp(restarts=3, backoff_step=3)


# -- every restart has its event, at least once (status.restartEventsPosted) --------------


async def test_a_restart_posts_its_event_before_the_write_that_records_it(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    loop, _ = await in_back_off(settings, executor, api, clock, images)
    writes = len(api.written("web"))
    clock.advance(settings.restart_backoff_seconds)

    made = await loop.reconcile(api.get("web"))

    status = api.get("web")["status"]
    assert (status["phase"], status["restarts"], status["restartEventsPosted"]) == ("Running", 1, 1)
    # one write for the restart, and it carries both counts (no write of its own)
    restart_writes = api.written("web")[writes:]
    assert len(restart_writes) == 1
    assert (restart_writes[0]["restarts"], restart_writes[0]["restartEventsPosted"]) == (1, 1)
    assert api.posted("web", "Restarting") == [
        f"the pod exited with code 0; starting the pod again (restart 1): pod {status['uuid']}"
    ]
    # posted by the reconciler itself, not left to kopf
    assert [(e.reason, e.posted) for e in made.events if e.reason == "Restarting"] == [
        ("Restarting", True)
    ]
    await loop.reconcile(api.get("web"))  # a resync: nothing more to say
    assert len(api.written("web")) == writes + 1
    assert len(api.posted("web", "Restarting")) == 1


async def test_a_restart_event_the_api_refused_is_posted_by_the_next_pass(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    loop, _ = await in_back_off(settings, executor, api, clock, images)
    clock.advance(settings.restart_backoff_seconds)
    api.events_down = 1  # the event's post meets an API outage

    made = await loop.reconcile(api.get("web"))

    assert made.error is None
    status = api.get("web")["status"]
    assert (status["phase"], status["restarts"], status["restartEventsPosted"]) == ("Running", 1, 0)
    assert api.posted("web", "Restarting") == []
    writes = len(api.written("web"))

    await loop.reconcile(api.get("web"))  # the next pass (a resync)

    assert api.get("web")["status"]["restartEventsPosted"] == 1
    assert len(api.written("web")) == writes + 1  # the write after a lost post
    (message,) = api.posted("web", "Restarting")
    assert message.startswith("starting the pod again (restart 1): pod ")
    assert "announced late" in message
    await loop.reconcile(api.get("web"))
    assert len(api.written("web")) == writes + 1
    assert len(api.posted("web", "Restarting")) == 1


async def test_a_first_start_writes_no_more_than_before(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    loop = Reconciler(settings=settings, executor=executor, api=api, clock=clock)
    api.create("web", images["sleeper"], uid=UID, restartPolicy="Always")
    await loop.reconcile(api.get("web"))
    status = api.get("web")["status"]
    assert (status["phase"], status["restarts"], status["restartEventsPosted"]) == ("Running", 0, 0)
    assert len(api.written("web")) == 2  # acknowledge, Running (issue 12's budget)
    assert api.events == {}


# -- the back-off is status.backoff, not the Reconciling reason -----------------------------


async def test_a_back_off_survives_a_write_that_replaced_its_reason(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    _, first = await in_back_off(settings, executor, api, clock, images)
    status = api.objects[("default", "web")]["status"]  # as the API server holds it
    finished = datetime.fromisoformat(status["finishedAt"])
    due = finished + timedelta(seconds=settings.restart_backoff_seconds)
    assert status["backoff"] == {"step": 0, "restartAt": due.strftime("%Y-%m-%dT%H:%M:%SZ")}
    # Another write replaced the reason (as a pass held back by an error may), rkt's garbage
    # collection removed the exited pod, and the agent restarted (nothing in memory).
    for cond in status["conditions"]:
        if cond["type"] in ("Reconciling", "Ready"):
            cond["reason"], cond["message"] = "DependencyMissing", "Secret team/s not found"
    await executor.remove(first)
    clock.advance(settings.restart_backoff_seconds)
    fresh = Executor(settings=settings, rkt=RktCli(settings))
    again = Reconciler(settings=settings, executor=fresh, api=api, clock=clock)

    out = await again.reconcile(api.get("web"))

    assert out.error is None
    status = api.get("web")["status"]
    # the restart is made and counted (read as a fresh start, it went uncounted)
    assert (status["phase"], status["restarts"], status["restartEventsPosted"]) == ("Running", 1, 1)
    assert "backoff" not in status
    live = [p for p in await fresh.pods_for(UID) if p.live]
    assert [(p.uuid, p.stamp) for p in live] == [
        (status["uuid"], PodStamp(restarts=1, backoff_step=1))
    ]
