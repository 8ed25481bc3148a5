"""Helpers of the executor tier: settings and launch plans for ``rkt-sim`` in a per-test data
directory, simulator faults, and finding (or, after a failed test, killing) this test's own
``rkt-sim`` processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from rkt_operator import errors
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.types import LaunchPlan, TaskDirs, TaskIdentity
from rkt_operator.settings import Settings


def rkt_sim_path() -> str:
    beside = Path(sys.executable).parent / "rkt-sim"
    found = str(beside) if beside.exists() else shutil.which("rkt-sim")
    assert found, "rkt-sim is not installed: run .venv/bin/pip install -e ."
    return found


TRAP_TERM = "trap 'echo term-ignored' TERM; echo ready; while true; do sleep 1; done"
TRAP_USR1 = "trap 'echo got-usr1' USR1; echo ready; while true; do sleep 0.2; done"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "node_name": "node-a",
        "rkt_path": rkt_sim_path(),
        "rkt_dir": tmp_path / "rkt",
        "rkt_local_config": tmp_path / "etc-rkt",
        "task_root": tmp_path / "tasks",
        "launcher": "detached",
        "discovery_timeout_seconds": 120.0,
        "rkt_timeout_seconds": 120.0,
        "max_kill_timeout_seconds": 30.0,
    }
    values.update(overrides)
    settings = Settings.model_validate(values)
    settings.rkt_dir.mkdir(parents=True, exist_ok=True)
    # A pod that ignores SIGTERM must be killed by the executor, not by the simulator's own
    # shutdown grace.
    (settings.rkt_dir / ".sim-config.json").write_text(json.dumps({"stop_grace_seconds": 600}))
    return settings


async def force_stop_all(rkt: RktCli) -> None:
    """Teardown: no pod of this test may outlive it."""
    faults = rkt.settings.rkt_dir / ".sim-faults.json"
    faults.unlink(missing_ok=True)
    try:
        listed = await rkt.list(deadline=60)
    except errors.RktError:
        listed = []
    for pod in listed:
        if pod.state == "running":
            with contextlib.suppress(errors.RktError):
                await rkt.stop(pod.uuid, force=True, deadline=60)
    for pod in listed:
        for _ in range(200):
            if pod.state != "running":
                break
            try:
                if (await rkt.status(pod.uuid, deadline=60)).state != "running":
                    break
            except errors.RktError:
                break
            await asyncio.sleep(0.05)


def identity(
    name: str = "web", *, uid: str = "0f6c2a5e-1b3d-4e7f-9a8b-7c6d5e4f3a21", generation: int = 1
) -> TaskIdentity:
    return TaskIdentity(namespace="default", name=name, uid=uid, generation=generation)


def make_plan(
    settings: Settings,
    ident: TaskIdentity,
    image: Path,
    *,
    args: Sequence[str] = (),
    ports: Mapping[str, int] | None = None,
    net: str | None = None,
    run_flags: Sequence[str] = (),
    trust: Sequence[str] | None = None,
    secret_env: Sequence[tuple[str, str]] = (),
    set_env: Mapping[str, str] | None = None,
    port_names: Sequence[str] = (),
    discover_network: bool = True,
    network_required: bool = False,
    kill_timeout: float = 5.0,
) -> LaunchPlan:
    """A plan laid out like Nomad's (§1.1): task dirs mounted at /alloc, /local, /secrets."""
    dirs = TaskDirs.for_task(settings.task_root, ident)
    vp = ident.volume_prefix
    prepare = ["--insecure-options=image", "prepare", "--quiet"]
    for suffix, source, target in (
        ("alloc", dirs.alloc, "/alloc"),
        ("local", dirs.local, "/local"),
        ("secrets", dirs.secrets, "/secrets"),
    ):
        prepare += [
            f"--volume={vp}-{suffix},kind=host,source={source}",
            f"--mount=volume={vp}-{suffix},target={target}",
        ]
    prepare += [f"--set-env={k}={v}" for k, v in (set_env or {}).items()]
    if secret_env:
        prepare.append(f"--set-env-file={dirs.secret_env_file}")
    prepare += [f"--port={name}:{host}" for name, host in (ports or {}).items()]
    prepare.append(str(image))
    prepare += [f"--user-annotation={k}={v}" for k, v in ident.annotations().items()]
    if args:
        prepare += ["--", *args]
    run_prepared = ["--insecure-options=image", "run-prepared"]
    if net is not None:
        run_prepared.append(f"--net={net}")
    run_prepared += list(run_flags)
    return LaunchPlan(
        identity=ident,
        dirs=dirs,
        trust=tuple(trust) if trust is not None else None,
        prepare=tuple(prepare),
        run_prepared=tuple(run_prepared),
        secret_env=tuple(secret_env),
        discover_network=discover_network,
        network_required=network_required,
        port_names=tuple(port_names),
        kill_timeout_seconds=kill_timeout,
        redact=frozenset(v for _, v in secret_env),
    )


def set_faults(settings: Settings, faults: Mapping[str, list[dict[str, Any]]]) -> None:
    """Arm the simulator's fault injection (``<dir>/.sim-faults.json``)."""
    (settings.rkt_dir / ".sim-faults.json").write_text(json.dumps(faults))


def sim_processes(settings: Settings, word: str) -> list[psutil.Process]:
    """rkt-sim processes of this test's data dir running subcommand ``word``."""
    out = []
    marker = f"--dir={settings.rkt_dir}"
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if marker in cmdline and word in cmdline:
            out.append(proc)
    return out


def kill_leftovers(settings: Settings) -> None:
    """Last resort after a failed test: this test's own rkt-sim processes."""
    for proc in sim_processes(settings, "run-prepared") + sim_processes(settings, "prepare"):
        with contextlib.suppress(psutil.Error):
            proc.kill()
