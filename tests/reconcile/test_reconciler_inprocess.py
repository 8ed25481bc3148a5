"""The reconcile loop in process: the real ``Reconciler`` and ``Executor`` on rkt-sim, with a
recording fake of the status-writing protocol and a clock the test moves.

These pin the loop's logic without an API server: how many status writes a start costs, that
an idle resync writes nothing, that a watch event older than our own write changes nothing,
that a pod missing from a cached ``rkt list`` is double-checked with rkt before it is called
lost, and that restarts wait for their back-off on the reconciler's clock. (The API-server
tiers in tests/agent check the same promises end to end.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from recording import Clock, RecordingApi

from rkt_operator.executor.service import Executor
from rkt_operator.reconcile import reconciler as reconciler_module
from rkt_operator.reconcile.reconciler import Reconciler
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings
from simrkt import force_stop_all, kill_leftovers, make_settings

UID = "8d3f6c1e-1111-4222-8333-944455556666"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A long resync: the pod cache keeps its list for half of it, so a test decides when a
    # pass sees a fresh `rkt list` (a new Reconciler, or the reconciler's own invalidation).
    # (The rkt and executor fixtures of tests/fixtures_sim.py use these settings and stop
    # every pod at the end.)
    return make_settings(tmp_path, resync_interval_seconds=3600.0)


@pytest.fixture
def api() -> RecordingApi:
    return RecordingApi()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def reconciler(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock
) -> Reconciler:
    return Reconciler(settings=settings, executor=executor, api=api, clock=clock)


def phases(patches: list[dict[str, Any]]) -> list[Any]:
    return [p.get("phase") for p in patches]


def reason(status: dict[str, Any], kind: str) -> Any:
    return next(c["reason"] for c in status["conditions"] if c["type"] == kind)


async def test_a_start_writes_twice_and_an_idle_resync_writes_nothing(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    loop = reconciler(settings, executor, api, clock)
    api.create("web", images["sleeper"], uid=UID)

    out = await loop.reconcile(api.get("web"))

    assert out.error is None
    # first sight (Reconciling, observedGeneration), then Running with the pod's UUID and IP
    # (nothing between prepare and launch: the pod carries the task's identity)
    assert phases(api.written("web")) == ["Pending", "Running"]
    assert out.writes == 2
    assert [e.reason for e in out.events] == ["Starting", "PodRunning"]
    status = api.get("web")["status"]
    assert status["observedGeneration"] == 1
    pods = await executor.pods_for(UID)
    assert [p.uuid for p in pods] == [status["uuid"]]
    assert pods[0].running

    for _ in range(3):  # idle resyncs, on the watch's current object
        clock.advance(60)
        idle = await loop.reconcile(api.get("web"))
        assert (idle.writes, idle.events, idle.error) == (0, [], None)
    assert len(api.patches) == 2
    assert [p.uuid for p in await executor.pods_for(UID)] == [status["uuid"]]


async def test_an_unchanged_resync_skips_its_report_and_a_change_is_still_reported(
    settings: Settings,
    executor: Executor,
    api: RecordingApi,
    clock: Clock,
    images: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    described: list[str] = []
    real_describe = reconciler_module.taskstate.describe

    def counting(decision: Any, **kw: Any) -> Any:
        described.append(decision.reason.name)
        return real_describe(decision, **kw)

    monkeypatch.setattr(reconciler_module.taskstate, "describe", counting)
    loop = reconciler(settings, executor, api, clock)
    api.create("web", images["sleeper"], uid=UID, restartPolicy="Never")
    await loop.reconcile(api.get("web"))
    uuid = api.get("web")["status"]["uuid"]
    described.clear()

    for _ in range(3):  # the first idle pass reports (and finds nothing to write)
        clock.advance(60)
        idle = await loop.reconcile(api.get("web"))
        assert (idle.writes, idle.events, idle.error) == (0, [], None)
    assert len(described) == 1

    # the object changes (a label: a new resourceVersion, same spec): reported afresh
    api.objects[("default", "web")]["metadata"]["resourceVersion"] = "999"
    await loop.reconcile(api.get("web"))
    assert len(described) == 2

    # the pod ends behind the agent's back: the next listing shows it, and it is reported
    await executor.stop(uuid, kill_timeout=1)
    loop.pods.invalidate()
    out = await loop.reconcile(api.get("web"))
    assert out.writes == 1
    assert api.get("web")["status"]["phase"] in ("Failed", "Succeeded")
    assert len(described) == 3


async def test_a_watch_event_older_than_our_write_changes_nothing(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    loop = reconciler(settings, executor, api, clock)
    stale = api.create("web", images["sleeper"], uid=UID)  # no status, an old resourceVersion
    await loop.reconcile(api.get("web"))
    written = len(api.patches)

    out = await loop.reconcile(stale)

    assert (out.writes, out.error) == (0, None)
    assert len(api.patches) == written
    pods = await executor.pods_for(UID)
    assert len(pods) == 1  # no second pod for an object that looked unstarted


async def test_a_restarted_agent_adopts_the_running_pod_without_a_write(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    api.create("web", images["sleeper"], uid=UID)
    await reconciler(settings, executor, api, clock).reconcile(api.get("web"))
    uuid = api.get("web")["status"]["uuid"]

    fresh = Executor(settings=settings, rkt=RktCli(settings))  # nothing in memory
    out = await reconciler(settings, fresh, api, clock).reconcile(api.get("web"))

    assert (out.writes, out.error) == (0, None)
    assert [p.uuid for p in await fresh.pods_for(UID)] == [uuid]


async def test_a_pod_missing_from_a_cached_list_is_asked_about_before_it_is_lost(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    api.create("web", images["sleeper"], uid=UID, restartPolicy="Never")
    late = reconciler(settings, executor, api, clock)
    assert await late.pods.pods_for(UID) == []  # its `rkt list` predates the pod
    await reconciler(settings, executor, api, clock).reconcile(api.get("web"))
    status = api.get("web")["status"]
    assert status["phase"] == "Running"

    out = await late.reconcile(api.get("web"))

    # the cached list does not show the pod, `rkt status` of that pod does: not lost
    assert (out.writes, out.error) == (0, None)
    assert api.get("web")["status"]["phase"] == "Running"
    assert [p.running for p in await executor.pods_for(UID)] == [True]


async def test_a_pod_rkt_no_longer_knows_is_reported_lost(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    api.create("web", images["sleeper"], uid=UID, restartPolicy="Never")
    await reconciler(settings, executor, api, clock).reconcile(api.get("web"))
    uuid = api.get("web")["status"]["uuid"]
    await executor.stop(uuid, kill_timeout=1)  # behind the agent's back
    await executor.remove(uuid)

    out = await reconciler(settings, executor, api, clock).reconcile(api.get("web"))

    assert out.writes == 1
    status = api.get("web")["status"]
    assert status["phase"] == "Failed"
    assert reason(status, "Stalled") == "PodLost"
    assert status["uuid"] == uuid
    assert await executor.pods_for(UID) == []  # and nothing was started in its place


async def test_a_restart_waits_for_its_back_off_on_the_reconcilers_clock(
    settings: Settings, executor: Executor, api: RecordingApi, clock: Clock, images: dict[str, Path]
) -> None:
    api.create("web", images["sleeper"], uid=UID, restartPolicy="Always")
    await reconciler(settings, executor, api, clock).reconcile(api.get("web"))
    first = api.get("web")["status"]["uuid"]
    await executor.stop(first, kill_timeout=1)  # the pod exits
    clock.catch_up()
    loop = reconciler(settings, executor, api, clock)

    waiting = await loop.reconcile(api.get("web"))

    status = api.get("web")["status"]
    assert status["phase"] == "Pending"
    assert reason(status, "Reconciling") == "CrashLoopBackOff"
    assert waiting.requeue_after is not None
    assert 0 < waiting.requeue_after <= settings.restart_backoff_seconds
    assert (await loop.reconcile(api.get("web"))).writes == 0  # not due yet: nothing new

    clock.advance(settings.restart_backoff_seconds)
    restarted = await loop.reconcile(api.get("web"))

    assert restarted.error is None
    status = api.get("web")["status"]
    assert status["phase"] == "Running"
    assert status["restarts"] == 1
    assert status["uuid"] != first
    running = [p for p in await executor.pods_for(UID) if p.running]
    assert [p.uuid for p in running] == [status["uuid"]]


@pytest.fixture
async def counted_rkt(settings: Settings) -> AsyncIterator[tuple[RktCli, list[str]]]:
    """An RktCli that records each subcommand it ran; its pods are stopped afterwards, as
    the ``rkt`` fixture does for the other tests."""
    commands: list[str] = []
    rkt = RktCli(settings, observer=lambda subcommand, _seconds: commands.append(subcommand))
    yield rkt, commands
    await force_stop_all(rkt)
    kill_leftovers(settings)


async def test_a_pass_lists_the_pods_once_and_never_again_to_report(
    settings: Settings,
    api: RecordingApi,
    clock: Clock,
    images: dict[str, Path],
    counted_rkt: tuple[RktCli, list[str]],
) -> None:
    rkt, commands = counted_rkt
    loop = reconciler(settings, Executor(settings=settings, rkt=rkt), api, clock)
    api.create("web", images["sleeper"], uid=UID)

    await loop.reconcile(api.get("web"))

    # observe once (one rkt list), then prepare and wait for the pod; the report reads
    # nothing more: what was started comes back from the apply step
    assert commands.count("list") == 1, commands
    assert commands.count("prepare") == 1, commands
    commands.clear()

    await loop.reconcile(api.get("web"))  # idle: one look, nothing else

    assert commands == ["list"]
