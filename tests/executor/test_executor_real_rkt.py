"""Opt-in (``--with-rkt``, root): the executor's start/stop/remove cycle on a real rkt binary.

The same plans as the simulator tier; a real rkt needs its stage1 and networking, so this
runs only where rkt is installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from simrkt import identity, make_plan

from rkt_operator.executor.service import Executor
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings


@pytest.mark.rkt
async def test_real_rkt_start_stop_remove(
    pytestconfig: pytest.Config, tmp_path: Path, images: dict[str, Path]
) -> None:
    binary = shutil.which(str(pytestconfig.getoption("--rkt-path")))
    assert binary, "--with-rkt needs rkt on PATH or --rkt-path"
    settings = Settings(
        rkt_path=binary,
        rkt_dir=tmp_path / "rkt",
        rkt_local_config=tmp_path / "etc-rkt",
        task_root=tmp_path / "tasks",
        launcher="auto",
    )
    executor = Executor(settings=settings, rkt=RktCli(settings))
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
