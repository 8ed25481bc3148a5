"""Crash safety: the agent SIGKILLed between any two steps of a start (or in the middle of
``rkt prepare``) leaves the pod running or resumable; a fresh executor adopts it and no task
ever has two pods.

The agent is ``start_driver.py``, a real process running ``ensure_started`` with the real
adapter and launcher, which SIGKILLs itself right after the step under test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rkt_operator.executor import files
from rkt_operator.executor.service import Executor
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.types import LaunchPlan
from rkt_operator.settings import Settings
from simrkt import identity, make_plan, set_faults, sim_processes

DRIVER = Path(__file__).with_name("start_driver.py")


def request_file(tmp_path: Path, settings: Settings, plan: LaunchPlan, kill_after: str) -> Path:
    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple | frozenset):
            return [plain(v) for v in value]
        return value

    request = {
        "settings": settings.model_dump(mode="json"),
        "plan": plain(dataclasses.asdict(plan)),
        "kill_after": kill_after,
    }
    path = tmp_path / f"request-{kill_after}.json"
    path.write_text(json.dumps(request))
    return path


def steps(stdout: str) -> list[tuple[str, str]]:
    out = []
    for line in stdout.splitlines():
        if line.startswith("step "):
            _, name, *rest = line.split(" ", 2)
            out.append((name, rest[0] if rest else ""))
    return out


async def wait_state(rkt: RktCli, uuid: str, state: str) -> None:
    for _ in range(1200):
        if (await rkt.status(uuid)).state == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"pod {uuid} never became {state}")


async def pods_of(rkt: RktCli, uid: str) -> list[str]:
    return [p.uuid for p in await rkt.list() if p.annotations().get("rktoperator.io/uid") == uid]


@pytest.mark.parametrize("kill_after", ["list", "prepare", "launch", "status"])
async def test_sigkill_between_steps_then_adopt(
    kill_after: str, rkt: RktCli, settings: Settings, images: dict[str, Path], tmp_path: Path
) -> None:
    ident = identity()
    plan = make_plan(settings, ident, images["sleeper"], port_names=("http",))
    driver = subprocess.run(
        [sys.executable, str(DRIVER), str(request_file(tmp_path, settings, plan, kill_after))],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert driver.returncode == -signal.SIGKILL, driver.stderr
    seen = steps(driver.stdout)
    assert seen[-1][0] == kill_after
    uuid = next((detail for name, detail in seen if name == "prepare"), None)

    if kill_after in ("launch", "status"):
        assert uuid is not None
        # Nobody supervises from the agent side any more: the pod runs on regardless.
        await wait_state(rkt, uuid, "running")
        marker_before = files.launch_marker(plan.dirs.root, uuid).read_text()
    if kill_after == "prepare":
        assert uuid is not None
        assert (await rkt.status(uuid)).state == "prepared"

    restarted = Executor(settings=settings, rkt=RktCli(settings))
    observed = await restarted.ensure_started(plan)
    assert observed.running
    assert observed.identity == ident
    assert observed.port_map == {"http": 8080}
    if uuid is not None:
        assert observed.uuid == uuid
    if kill_after in ("launch", "status"):
        # Adopted, not relaunched: the same supervisor still owns the pod.
        assert files.launch_marker(plan.dirs.root, uuid or "").read_text() == marker_before
    assert await pods_of(rkt, ident.uid) == [observed.uuid]
    assert [o.uuid for o in await restarted.pods_for(ident.uid)] == [observed.uuid]


async def test_sigkill_during_prepare_waits_for_the_orphaned_prepare(
    rkt: RktCli, settings: Settings, images: dict[str, Path], tmp_path: Path
) -> None:
    ident = identity()
    plan = make_plan(settings, ident, images["sleeper"])
    # The prepare the agent starts takes a while; the agent dies while it runs.
    set_faults(settings, {"prepare": [{"action": "slow", "seconds": 5}]})
    driver = subprocess.Popen(
        [sys.executable, str(DRIVER), str(request_file(tmp_path, settings, plan, "never"))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not sim_processes(settings, "prepare"):
            assert driver.poll() is None, "the driver ended before rkt prepare started"
            assert time.monotonic() < deadline, "rkt prepare never started"
            await asyncio.sleep(0.02)
    finally:
        driver.kill()
        driver.wait(timeout=60)

    # The restarted agent must not prepare a second pod while the orphaned one is running.
    restarted = Executor(settings=settings, rkt=RktCli(settings))
    observed = await restarted.ensure_started(plan)
    assert observed.running
    assert await pods_of(rkt, ident.uid) == [observed.uuid]


async def test_concurrent_starts_in_one_agent_make_one_pod(
    executor: Executor, rkt: RktCli, settings: Settings, images: dict[str, Path]
) -> None:
    plan = make_plan(settings, identity(), images["sleeper"])
    results = await asyncio.gather(*(executor.ensure_started(plan) for _ in range(3)))
    assert len({r.uuid for r in results}) == 1
    assert await pods_of(rkt, identity().uid) == [results[0].uuid]
