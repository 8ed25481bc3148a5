"""The executor's start/stop/remove cycle on the real rkt (host flavor, root).

The same plans as the simulator tier.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rkt_operator.executor.service import Executor
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings
from simrkt import identity, make_plan


@pytest.mark.rkt
async def test_real_rkt_start_stop_remove(
    real_rkt: str, host_left_clean: None, tmp_path: Path, images: dict[str, Path]
) -> None:
    """Started, then stopped at once: the stop may land before stage1 has written its pid
    (rkt stop fails then), and must still stop the pod."""
    binary = real_rkt
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
