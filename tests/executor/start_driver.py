"""A stand-in agent for the crash tests: runs ``Executor.ensure_started`` with the real
``RktCli`` and launcher, and SIGKILLs itself right after a chosen step.

Usage: ``python start_driver.py <request.json>``. The request holds the settings, the plan
and ``kill_after``: one of ``list``, ``trust``, ``prepare``, ``launch``, ``status`` (the first
discovery poll), ``never``, or ``hold`` (never, and stay alive after the start, as an agent
does, until killed). Before dying it prints ``step <name> <detail>`` lines on stdout
so that the test knows how far it got.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from rkt_operator.executor.launcher import Launcher
from rkt_operator.executor.service import Executor
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.pods import PodStatus
from rkt_operator.rkt.types import LaunchPlan, TaskDirs, TaskIdentity
from rkt_operator.settings import Settings


def step(name: str, detail: str = "") -> None:
    sys.stdout.write(f"step {name} {detail}\n")
    sys.stdout.flush()


class DyingCli(RktCli):
    def __init__(self, settings: Settings, kill_after: str) -> None:
        super().__init__(settings)
        self.kill_after = kill_after

    def maybe_die(self, name: str, detail: str = "") -> None:
        step(name, detail)
        if name == self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    async def list(self, *, deadline: float | None = None) -> list[PodStatus]:
        result = await super().list(deadline=deadline)
        self.maybe_die("list")
        return result

    async def trust(self, args: Sequence[str], *, secrets: Collection[str] = ()) -> None:
        await super().trust(args, secrets=secrets)
        self.maybe_die("trust")

    async def prepare(
        self, args: Sequence[str], *, secrets: Collection[str] = (), pass_fds: Sequence[int] = ()
    ) -> str:
        uuid = await super().prepare(args, secrets=secrets, pass_fds=pass_fds)
        self.maybe_die("prepare", uuid)
        return uuid

    async def status(self, uuid: str, *, deadline: float | None = None) -> PodStatus:
        result = await super().status(uuid, deadline=deadline)
        self.maybe_die("status", result.state)
        return result


class DyingLauncher(Launcher):
    async def launch(self, plan: LaunchPlan, uuid: str) -> None:
        await super().launch(plan, uuid)
        assert isinstance(self.rkt, DyingCli)
        self.rkt.maybe_die("launch", uuid)


def plan_from(data: dict[str, Any]) -> LaunchPlan:
    identity = TaskIdentity(**data["identity"])
    dirs = TaskDirs(**{k: Path(v) for k, v in data["dirs"].items()})
    return LaunchPlan(
        identity=identity,
        dirs=dirs,
        trust=tuple(data["trust"]) if data["trust"] is not None else None,
        prepare=tuple(data["prepare"]),
        run_prepared=tuple(data["run_prepared"]),
        discover_network=data["discover_network"],
        port_names=tuple(data["port_names"]),
    )


async def main() -> None:
    request = json.loads(Path(sys.argv[1]).read_text())
    settings = Settings.model_validate(request["settings"])
    rkt = DyingCli(settings, request["kill_after"])
    executor = Executor(
        settings=settings, rkt=rkt, launcher=DyingLauncher(settings=settings, rkt=rkt)
    )
    observed = await executor.ensure_started(plan_from(request["plan"]))
    step("done", f"{observed.uuid} {observed.state}")
    if request["kill_after"] == "hold":
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
