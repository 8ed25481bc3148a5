"""Stop, remove, cleanup, observation, stats, signals and exec of running pods (rkt-sim)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from rkt_operator import errors
from rkt_operator.executor import files
from rkt_operator.executor.service import Executor
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.types import PodObservation
from rkt_operator.settings import Settings
from simrkt import identity, make_plan, make_settings


async def started(
    executor: Executor, settings: Settings, image: Path, **kw: object
) -> PodObservation:
    plan = make_plan(settings, identity(), image, **kw)  # type: ignore[arg-type]
    observed = await executor.ensure_started(plan)
    assert observed.running
    return observed


async def wait_for_output(path: Path, text: str) -> None:
    for _ in range(1200):
        if path.exists() and text in path.read_text():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {path}")


async def test_graceful_stop(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    pod = await started(executor, settings, images["sleeper"])
    await executor.stop(pod.uuid, kill_timeout=30)
    observed = await executor.observe(pod.uuid)
    assert observed is not None
    assert observed.state == "exited"
    assert observed.finished
    assert not observed.running
    assert observed.exit_code == 0  # apps ended by a graceful shutdown record 0
    assert observed.stop_signal == "SIGTERM"  # ... so the agent remembers it stopped it
    # Stopping again, or stopping a pod rkt never heard of, is fine.
    await executor.stop(pod.uuid, kill_timeout=30)
    await executor.stop("0badc0de-0000-4000-8000-000000000000", kill_timeout=30)


async def test_pod_ignoring_stop_is_force_killed(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    pod = await started(executor, settings, images["trapper"])
    root = make_plan(settings, identity(), images["trapper"]).dirs.root
    await wait_for_output(files.log_files(root, pod.uuid)[0], "ready")
    await executor.stop(pod.uuid, kill_timeout=1)
    observed = await executor.observe(pod.uuid)
    assert observed is not None
    assert observed.finished
    assert "term-ignored" in files.log_files(root, pod.uuid)[0].read_text()
    # Killed, not exited by itself: the supervisor saw rkt die from SIGKILL.
    record = files.read_exit(files.exit_file(root, pod.uuid))
    assert record is not None
    assert record.returncode == -signal.SIGKILL
    # rkt's own record of the app, when it wrote one before the kill, overrules the
    # supervisor's; otherwise the supervisor's record (128 + SIGKILL) stands.
    app_codes = [a.exit_code for a in (await executor.rkt.status(pod.uuid)).apps]
    assert observed.exit_code == (app_codes[0] if app_codes[0] is not None else 137)
    assert observed.finished_at is not None
    assert observed.stop_signal == "SIGKILL"


async def test_kill_timeout_is_capped_by_the_node(
    rkt: RktCli, tmp_path: Path, images: dict[str, Path]
) -> None:
    # A task asking for an hour gets the node's 1 s cap (the test would time out otherwise).
    settings = make_settings(tmp_path, max_kill_timeout_seconds=1.0)
    executor = Executor(settings=settings, rkt=RktCli(settings))
    pod = await started(executor, settings, images["trapper"])
    await executor.stop(pod.uuid, kill_timeout=3600)
    observed = await executor.observe(pod.uuid)
    assert observed is not None
    assert observed.finished


async def test_stop_of_a_prepared_pod_is_a_no_op(
    executor: Executor, rkt: RktCli, settings: Settings, images: dict[str, Path]
) -> None:
    plan = make_plan(settings, identity(), images["sleeper"])
    uuid = await rkt.prepare(plan.prepare)
    await executor.stop(uuid, kill_timeout=5)
    assert (await rkt.status(uuid)).state == "prepared"


async def test_remove(executor: Executor, settings: Settings, images: dict[str, Path]) -> None:
    pod = await started(executor, settings, images["sleeper"])
    with pytest.raises(errors.PodWrongState):
        await executor.remove(pod.uuid)  # still running
    await executor.stop(pod.uuid, kill_timeout=10)
    await executor.remove(pod.uuid)
    assert await executor.observe(pod.uuid) is None
    root = make_plan(settings, identity(), images["sleeper"]).dirs.root
    assert not files.exit_file(root, pod.uuid).exists()
    assert not files.launch_marker(root, pod.uuid).exists()
    assert not files.stop_file(root, pod.uuid).exists()
    await executor.remove(pod.uuid)  # idempotent


async def test_cleanup_removes_task_directories(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    pod = await started(executor, settings, images["sleeper"])
    plan = make_plan(settings, identity(), images["sleeper"])
    await executor.stop(pod.uuid, kill_timeout=10)
    await executor.remove(pod.uuid)
    assert plan.dirs.root.exists()
    await executor.cleanup(identity())
    assert not plan.dirs.root.exists()
    assert not files.lock_file(settings.task_root, identity().uid).exists()
    await executor.cleanup(identity())  # idempotent


async def test_list_and_pods_for_only_report_ours(
    executor: Executor, rkt: RktCli, settings: Settings, images: dict[str, Path]
) -> None:
    ours = await started(executor, settings, images["sleeper"])
    other = identity("other", uid="11111111-2222-4333-8444-555555555555")
    theirs = await executor.ensure_started(make_plan(settings, other, images["sleeper"]))
    # A pod nobody stamped (someone ran rkt by hand) is not ours.
    foreign = await rkt.prepare(["--insecure-options=image", "prepare", str(images["sleeper"])])
    listed = {o.uuid: o for o in await executor.list_pods()}
    assert set(listed) == {ours.uuid, theirs.uuid}
    assert listed[theirs.uuid].identity == other
    assert [o.uuid for o in await executor.pods_for(identity().uid)] == [ours.uuid]
    unowned = await executor.observe(foreign)
    assert unowned is not None
    assert unowned.identity is None
    assert unowned.state == "prepared"


async def test_exit_code_falls_back_to_the_supervisor_record(
    executor: Executor, rkt: RktCli, settings: Settings, images: dict[str, Path]
) -> None:
    pod = await started(executor, settings, images["sleeper"])
    await rkt.stop(pod.uuid, force=True)  # no app status is written on a forced stop
    for _ in range(1200):
        observed = await executor.observe(pod.uuid)
        if observed and observed.finished and observed.exit_code is not None:
            break
        await asyncio.sleep(0.05)
    assert observed is not None
    assert observed.finished
    status = await rkt.status(pod.uuid)
    assert all(app.exit_code is None for app in status.apps)
    assert observed.exit_code == 137
    assert observed.stop_signal is None  # stopped behind the agent's back: not its stop


async def test_stats_of_a_running_pod(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    pod = await started(executor, settings, images["sleeper"])
    sample = await executor.stats(pod.uuid)
    assert sample is not None
    assert sample.processes >= 2  # the pod process and its app
    assert sample.rss_bytes > 0
    assert sample.cpu_seconds > 0
    assert sample.pid == (await executor.rkt.status_text(pod.uuid)).pid
    await executor.stop(pod.uuid, kill_timeout=10)
    assert await executor.stats(pod.uuid) is None
    assert await executor.stats("0badc0de-0000-4000-8000-000000000000") is None


async def test_signal_reaches_the_app(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    pod = await started(executor, settings, images["usr1"])
    stdout = files.log_files(make_plan(settings, identity(), images["usr1"]).dirs.root, pod.uuid)[0]
    await wait_for_output(stdout, "ready")
    await executor.signal(pod.uuid, signal.SIGUSR1)
    await wait_for_output(stdout, "got-usr1")
    observed = await executor.observe(pod.uuid)
    assert observed is not None
    assert observed.running  # handled, the pod goes on
    await executor.stop(pod.uuid, kill_timeout=10)
    with pytest.raises(errors.PodWrongState):
        await executor.signal(pod.uuid, signal.SIGUSR1)
    with pytest.raises(errors.PodNotFound):
        await executor.signal("0badc0de-0000-4000-8000-000000000000", signal.SIGUSR1)


async def test_exec_in_a_running_pod(
    executor: Executor, settings: Settings, images: dict[str, Path]
) -> None:
    pod = await started(executor, settings, images["sleeper"])
    output, code = await executor.rkt.enter(
        pod.uuid, ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]
    )
    assert code == 3
    assert "out\n" in output
    assert "err\n" in output
    big, code = await executor.rkt.enter(pod.uuid, ["/bin/sh", "-c", "seq 1 5000"])
    assert code == 0
    assert len(big.encode()) == 4096  # the last 4 KiB, as Nomad's Exec
    assert big.endswith("4999\n5000\n")


async def test_aborted_prepare_is_observed_and_removed(
    executor: Executor, rkt: RktCli, settings: Settings, images: dict[str, Path]
) -> None:
    # What a prepare killed half-way leaves: an unlocked pods/prepare/<uuid> directory with
    # no manifest (rkt's "aborted prepare"; status JSON refuses it, the text format works).
    uuid = "5d3c2b1a-9e8f-4a7b-8c6d-0e1f2a3b4c5d"
    await rkt.prepare(["--insecure-options=image", "prepare", str(images["sleeper"])])
    (settings.rkt_dir / "pods" / "prepare" / uuid).mkdir(parents=True)
    observed = await executor.observe(uuid)
    assert observed is not None
    assert observed.state == "aborted prepare"
    assert observed.finished
    assert observed.identity is None
    assert await executor.list_pods() == []
    await executor.remove(uuid)
    assert await executor.observe(uuid) is None
