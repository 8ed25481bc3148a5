"""Failed starts that heal, and a restart counted from the pod's stamp, on the real rkt.

The in-process loop (real ``Reconciler`` and ``Executor``, a recording status API, a clock
the test moves) with the real rkt as the judge: a ``rkt prepare`` that fails because the
image file is not there yet (a transient cause made from outside) is tried again with the
back-off and the task runs once the file is back, without a spec change; and the counts the
agent stamps on a pod (``--user-annotation``) come back from what the real rkt reports.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from recording import Clock, RecordingApi

from rkt_operator import errors
from rkt_operator.executor.service import Executor
from rkt_operator.reconcile.reconciler import Reconciler
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.types import PodStamp
from rkt_operator.settings import Settings

UID = "8d3f6c1e-1111-4222-8333-944455550016"

pytestmark = pytest.mark.rkt


@pytest.fixture
def settings(real_rkt: str, tmp_path: Path) -> Settings:
    return Settings(
        node_name="node-a",
        rkt_path=real_rkt,
        rkt_dir=tmp_path / "rkt",
        rkt_local_config=tmp_path / "etc-rkt",
        task_root=tmp_path / "tasks",
        launcher="auto",
        resync_interval_seconds=3600.0,
    )


@pytest.fixture
async def executor(settings: Settings) -> Any:
    executor = Executor(settings=settings, rkt=RktCli(settings))
    yield executor
    # No pod may outlive the test: a stop that real rkt refuses (a pod still booting) is
    # tried again, then forced.
    for pod in await executor.list_pods():
        for attempt in range(20):
            try:
                if attempt < 10:
                    await executor.stop(pod.uuid, kill_timeout=5)
                else:
                    await executor.rkt.stop(pod.uuid, force=True)
                break
            except errors.RktError:
                await asyncio.sleep(1)
        await executor.remove(pod.uuid)
    await executor.remove_aborted()
    assert await executor.rkt.list() == []


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


async def test_a_prepare_that_fails_for_a_missing_image_file_heals_when_it_appears(
    settings: Settings,
    executor: Executor,
    host_left_clean: None,
    images: dict[str, Path],
    tmp_path: Path,
) -> None:
    image = tmp_path / "arriving" / "sleeper.aci"  # not there yet
    image.parent.mkdir()
    api = RecordingApi()
    clock = Clock()
    loop = Reconciler(settings=settings, executor=executor, api=api, clock=clock)
    api.create("web", image, uid=UID, restartPolicy="Always")

    first = await loop.reconcile(api.get("web"))

    assert isinstance(first.error, errors.PrepareError), first.error
    status = api.get("web")["status"]
    reconciling = condition(status, "Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "PrepareFailed")
    assert condition(status, "Stalled")["status"] == "False"
    assert status["startFailure"]["attempts"] == 1
    listing = await executor.rkt.list()
    assert [p.state for p in listing] == []  # no pod, no "aborted prepare" debris

    shutil.copy(images["sleeper"], image)  # the cause goes away, the spec is unchanged
    assert (await loop.reconcile(api.get("web"))).writes == 0  # the back-off first
    clock.advance(settings.restart_backoff_seconds)
    healed = await loop.reconcile(api.get("web"))

    assert healed.error is None
    status = api.get("web")["status"]
    assert status["phase"] == "Running", status
    assert "startFailure" not in status
    assert condition(status, "Ready")["status"] == "True"
    pods = [p for p in await executor.pods_for(UID) if p.running]
    assert [p.uuid for p in pods] == [status["uuid"]]
    # The counts stamped at prepare come back from the real rkt's own listing.
    assert pods[0].stamp == PodStamp(restarts=0, backoff_step=0)


async def test_a_restart_the_status_never_recorded_is_counted_from_the_real_pod(
    settings: Settings,
    executor: Executor,
    host_left_clean: None,
    images: dict[str, Path],
) -> None:
    api = RecordingApi()
    clock = Clock()
    loop = Reconciler(settings=settings, executor=executor, api=api, clock=clock)
    api.create("web", images["sleeper"], uid=UID, restartPolicy="Always")
    await loop.reconcile(api.get("web"))
    old = api.get("web")["status"]["uuid"]
    await executor.stop(old, kill_timeout=5)  # the app ends
    clock.catch_up()
    clock.advance(settings.restart_backoff_seconds)  # its restart is due at once
    loop.pods.invalidate()
    real_patch = api.patch_task_status

    async def down_at_the_write_naming_the_new_pod(namespace: str, name: str, patch: Any) -> Any:
        if patch.get("uuid") not in (None, old):
            raise ConnectionRefusedError("kube-apiserver is restarting")
        return await real_patch(namespace, name, patch)

    api.patch_task_status = down_at_the_write_naming_the_new_pod  # type: ignore[method-assign]
    with pytest.raises(ConnectionRefusedError):
        await loop.reconcile(api.get("web"))  # old pod removed, new one started, not recorded
    api.patch_task_status = real_patch  # type: ignore[method-assign]
    assert api.get("web")["status"]["restarts"] == 0

    fresh = Executor(settings=settings, rkt=RktCli(settings))  # a new agent
    out = await Reconciler(settings=settings, executor=fresh, api=api, clock=clock).reconcile(
        api.get("web")
    )

    assert out.error is None
    status = api.get("web")["status"]
    assert (status["phase"], status["restarts"]) == ("Running", 1)
    # The restart's event went out before the write that failed; the new agent finds it
    # under the same name (not doubled) and records it as posted.
    assert len(api.posted("web", "Restarting")) == 1
    assert status["restartEventsPosted"] == 1
    live = [p for p in await fresh.pods_for(UID) if p.live]
    assert [p.uuid for p in live] == [status["uuid"]]
    assert status["uuid"] != old
    assert live[0].stamp == PodStamp(restarts=1, backoff_step=1)
