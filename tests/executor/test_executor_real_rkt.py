"""The executor's start/stop/remove cycle on the real rkt (host flavor, root).

The same plans as the simulator tier; and a pod boots one journald (``stage1quirks``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import psutil
import pytest

from rkt_operator.executor import discovery, stats
from rkt_operator.executor.service import Executor
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings
from simrkt import identity, make_plan


def _real_executor(rkt: str, tmp_path: Path) -> tuple[Settings, Executor]:
    """An executor on real rkt with its store, config and task root under ``tmp_path``."""
    settings = Settings(
        rkt_path=rkt,
        rkt_dir=tmp_path / "rkt",
        rkt_local_config=tmp_path / "etc-rkt",
        task_root=tmp_path / "tasks",
        launcher="auto",
    )
    return settings, Executor(settings=settings, rkt=RktCli(settings))


@pytest.mark.rkt
async def test_real_rkt_start_stop_remove(
    real_rkt: str, host_left_clean: None, tmp_path: Path, images: dict[str, Path]
) -> None:
    """Started, then stopped at once: the stop may land before stage1 has written its pid
    (rkt stop fails then), and must still stop the pod."""
    settings, executor = _real_executor(real_rkt, tmp_path)
    plan = make_plan(settings, identity(), images["sleeper"], port_names=("http",))
    observed = await executor.ensure_started(plan)
    try:
        assert observed.running
        assert observed.ip is not None
        assert observed.port_map == {"http": 8080}
        assert [o.uuid for o in await executor.pods_for(identity().uid)] == [observed.uuid]
    finally:
        await executor.stop(observed.uuid, kill_timeout=10)
    after = await executor.observe(observed.uuid)
    assert after is not None
    assert after.finished
    await executor.remove(observed.uuid)
    assert await executor.observe(observed.uuid) is None


@pytest.mark.rkt
async def test_real_rkt_writes_the_file_discovery_wakes_on_and_one_status_then_shows_the_ip(
    real_rkt: str,
    host_left_clean: None,
    tmp_path: Path,
    images: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Discovery's premise on real rkt (``executor.discovery``, wake-up files): rkt writes
    ``pods/run/<uuid>/net-info.json`` for a contained network, and once it is there one
    ``rkt status`` shows the IP. So no status call follows one that the file woke; the
    others came at the end of a capped wait (how many depends on how fast rkt set the
    network up: the benchmark counts them)."""
    caplog.set_level(logging.DEBUG, logger=discovery.log.name)
    settings, _ = _real_executor(real_rkt, tmp_path)
    ran: list[str] = []
    executor = Executor(
        settings=settings, rkt=RktCli(settings, observer=lambda sub, _s: ran.append(sub))
    )
    observed = await executor.ensure_started(make_plan(settings, identity(), images["sleeper"]))
    try:
        assert observed.running
        assert observed.ip is not None
        assert discovery.ready_signal(settings.rkt_dir, observed.uuid, want_ip=True).is_file()
        waits = [
            r.args
            for r in caplog.records
            if r.name == discovery.log.name and r.msg.startswith("discovery wait")
        ]
        assert len(waits) == ran.count("status")
        assert all(isinstance(w, tuple) and w[3] for w in waits)  # watched
        woken = [isinstance(w, tuple) and bool(w[4]) for w in waits]
        assert True not in woken[:-1], f"status calls after a wake-up: {waits}"
    finally:
        await executor.stop(observed.uuid, kill_timeout=10)
        await executor.remove(observed.uuid)


def _pod_tree(rkt_dir: Path, uuid: str) -> list[psutil.Process]:
    """The processes under the pod's nspawn (its systemd, journald, the app), or []."""
    pid = stats.pid_from_pod_dir(rkt_dir, uuid)
    if pid is None:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


@pytest.mark.rkt
@pytest.mark.parametrize("overlay", [True, False], ids=["overlay", "no-overlay"])
async def test_a_host_stage1_pod_boots_one_journald_and_runs_its_app(
    real_rkt: str, host_left_clean: None, tmp_path: Path, images: dict[str, Path], overlay: bool
) -> None:
    """rkt 1.30's host stage1 installs journald's unit a second time as
    systemd-journal-flush.service: two journalds race at every boot, and when journald
    loses, the app's start fails on its dependency and the pod halts itself with exit code
    0 (issue 16). The agent masks the copy before the launch: one journald, the app runs."""
    settings, executor = _real_executor(real_rkt, tmp_path)
    plan = make_plan(settings, identity(), images["sleeper"])
    if not overlay:
        at = plan.prepare.index("prepare") + 1
        plan = dataclasses.replace(
            plan, prepare=(*plan.prepare[:at], "--no-overlay", *plan.prepare[at:])
        )
    observed = await executor.ensure_started(plan)
    try:
        tree: list[psutil.Process] = []
        for _ in range(300):  # the app is up once stage1's systemd has booted the pod
            tree = _pod_tree(settings.rkt_dir, observed.uuid)
            if any(_cmdline(p)[:2] == ["/bin/sleep", "3600"] for p in tree):
                break
            after = await executor.observe(observed.uuid)
            assert after is not None
            assert not after.finished, f"pod {observed.uuid} ended by itself: {after}"
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the app of pod {observed.uuid} never started")
        journalds = [p.pid for p in tree if _cmdline(p)[:1] == ["/lib/systemd/systemd-journald"]]
        assert len(journalds) == 1, f"journald processes in the pod: {journalds}"
    finally:
        await executor.stop(observed.uuid, kill_timeout=30)
        await executor.remove(observed.uuid)
