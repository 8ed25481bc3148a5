"""The detached launcher's pods outlive the agent's container, not only the agent's process.

A "container" here is what the kubelet makes of the agent's pod, minus the image: a cgroup
of its own in every hierarchy and a mount namespace of its own (``unshare --mount``, shared
propagation as the chart's Bidirectional mounts), in the host's PID namespace (hostPID). The
stand-in agent (``start_driver.py``, the real executor and launcher) starts a pod in it and
stays alive; then the whole container is killed as the kubelet does it (SIGKILL to every
process of its cgroup), which also ends its mount namespace. The pod must keep running, its
supervisor must be in the host's mount namespace and in ``<host_cgroup>/<uuid>``, and a fresh
executor must adopt it (same UUID, same supervisor). The control: with ``host_launch: never``
the same kill ends the pod, so the test can tell the two apart.

On the simulator always; on real rkt (host stage1, the nspawn wrapper through
``extra_path``) with ``--with-rkt``. The real-kubelet proof is the node tier's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from test_executor_crash import DRIVER, request_file

import realrkt
from rkt_operator import errors
from rkt_operator.executor import files, hostns
from rkt_operator.executor.service import Executor
from rkt_operator.rkt.cli import RktCli
from rkt_operator.settings import Settings
from simrkt import identity, make_plan, make_settings

REPO = Path(__file__).resolve().parents[2]
# PID 1 of this project's machines may not be inspected; kthreadd is in the host's (initial)
# namespaces everywhere.
HOST_PID = 2
NSPAWN_WRAPPER = REPO / "helm" / "node" / "systemd-nspawn"


def _needs_root() -> None:
    realrkt.require_root("the escape tests (cgroups, namespaces)", "unshare")


def _mnt_ns(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/mnt").st_ino


class Container:
    """A cgroup in every hierarchy plus a mount namespace: what a container is to the kernel."""

    def __init__(self) -> None:
        self.name = f"rkt-operator-test-ctr-{uuidlib.uuid4().hex[:10]}"
        self.joined: list[tuple[Path, Path]] = []
        self.process: subprocess.Popen[str] | None = None
        self.namespace = 0

    def run(self, argv: list[str]) -> subprocess.Popen[str]:
        """Start ``argv`` inside: the process is moved into the cgroups before it unshares its
        mount namespace and execs (it waits for a line on stdin)."""
        shell = 'read -r go; exec unshare --mount --propagation unchanged -- "$@"'
        self.process = subprocess.Popen(
            ["sh", "-c", shell, "container", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.joined = hostns.join_cgroup(self.name, pid=self.process.pid)
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.close()
        return self.process

    def pids(self) -> set[int]:
        out: set[int] = set()
        for _, directory in self.joined:
            with contextlib.suppress(FileNotFoundError):
                out |= {int(p) for p in (directory / "cgroup.procs").read_text().split()}
        return out

    def kill(self) -> None:
        """SIGKILL every process of the container until none is left (as runc and the
        kubelet do), then remove its cgroups."""
        deadline = time.monotonic() + 30
        while pids := self.pids():
            assert time.monotonic() < deadline, f"container processes survive SIGKILL: {pids}"
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        if self.process is not None:
            self.process.wait(timeout=30)
            if self.process.stdout is not None:
                self.process.stdout.close()
        for _, directory in reversed(self.joined):
            with contextlib.suppress(FileNotFoundError):
                directory.rmdir()

    def namespace_alive(self) -> bool:
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError):
                    if _mnt_ns(proc.name) == self.namespace:
                        return True
        return False


@pytest.fixture
def container() -> Iterator[Container]:
    _needs_root()
    box = Container()
    try:
        yield box
    finally:
        box.kill()


def _cgroup_pids(relative: str, *, but: int = 0) -> set[int]:
    """Every process in a cgroup or below it, in any hierarchy (``but`` excluded)."""
    out: set[int] = set()
    for hierarchy in hostns.hierarchies():
        for below, _, _ in os.walk(hierarchy.root / relative):
            with contextlib.suppress(FileNotFoundError):
                out |= {int(p) for p in (Path(below) / "cgroup.procs").read_text().split()}
    out.discard(but)
    return out


def _kill_cgroup(relative: str, *, but: int = 0) -> None:
    """SIGKILL every process in a cgroup tree (``but`` excepted) until none is left."""
    deadline = time.monotonic() + 30
    while pids := _cgroup_pids(relative, but=but):
        assert time.monotonic() < deadline, f"processes survive SIGKILL: {pids}"
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _remove_cgroups(relative: str) -> None:
    _kill_cgroup(relative)
    for hierarchy in hostns.hierarchies():
        hostns.remove_tree(hierarchy.root / relative)


def _real_settings(binary: str, tmp_path: Path, **overrides: object) -> Settings:
    # Host setup of a node without systemd as PID 1: the nspawn wrapper in its own directory,
    # named by extra_path (agent.extraPath in the chart).
    wrapper_dir = tmp_path / "nspawn"
    wrapper_dir.mkdir()
    shutil.copy2(NSPAWN_WRAPPER, wrapper_dir / "systemd-nspawn")
    return Settings.model_validate(
        {
            "node_name": "node-a",
            "rkt_path": binary,
            "rkt_dir": tmp_path / "rkt",
            "rkt_local_config": tmp_path / "etc-rkt",
            "task_root": tmp_path / "tasks",
            "launcher": "detached",
            "extra_path": (str(wrapper_dir),),
            "discovery_timeout_seconds": 120.0,
            **overrides,
        }
    )


async def _start_in_container(
    container: Container, settings: Settings, tmp_path: Path, image: Path
) -> tuple[str, object]:
    plan = make_plan(settings, identity(), image, port_names=("http",))
    driver = container.run(
        [sys.executable, str(DRIVER), str(request_file(tmp_path, settings, plan, "hold"))]
    )
    assert driver.stdout is not None
    done = ""
    deadline = time.monotonic() + 240
    while not done:
        line = await asyncio.wait_for(asyncio.to_thread(driver.stdout.readline), 240)
        assert line, f"the stand-in agent ended before the pod ran (rc={driver.poll()})"
        if line.startswith("step done "):
            done = line.split()[2]
        assert time.monotonic() < deadline
    container.namespace = _mnt_ns(driver.pid)
    assert container.namespace != _mnt_ns(HOST_PID), "the stand-in agent is not in a container"
    return done, plan


def _supervisor(settings: Settings, plan: object, uuid: str) -> psutil.Process:
    root = plan.dirs.root  # type: ignore[attr-defined]
    data = json.loads(files.launch_marker(root, uuid).read_text())
    return psutil.Process(int(data["pid"]))


def _network_state(settings: Settings, uuid: str) -> tuple[Path, list[Path]] | None:
    """Real rkt's host-side network state of a pod: its netns file and CNI IP allocations."""
    pod_dir = settings.rkt_dir / "pods" / "run" / uuid
    if not (pod_dir / "netns").exists():
        return None  # the simulator has no CNI networking
    netns = Path((pod_dir / "netns").read_text().strip())
    assert netns.exists()
    allocations = [
        path
        for path in Path("/var/lib/cni/networks").glob("*/*")
        if path.is_file() and uuid in path.read_text(errors="replace")
    ]
    assert allocations, "no CNI IP allocation found for the pod"
    return netns, allocations


async def _escape_case(
    settings: Settings, container: Container, tmp_path: Path, image: Path
) -> None:
    rkt = RktCli(settings)
    uuid, plan = await _start_in_container(container, settings, tmp_path, image)
    cgroup = f"{settings.host_cgroup}/{uuid}"
    try:
        supervisor = _supervisor(settings, plan, uuid)
        network = _network_state(settings, uuid)
        marker = files.launch_marker(plan.dirs.root, uuid).read_text()  # type: ignore[attr-defined]
        # Before the kill: the supervisor left the container for the host.
        assert _mnt_ns(supervisor.pid) == _mnt_ns(HOST_PID)
        memberships = Path(f"/proc/{supervisor.pid}/cgroup").read_text()
        assert f"/{cgroup}\n" in memberships, memberships
        assert container.name not in memberships
        assert supervisor.pid not in container.pids()

        container.kill()
        assert not container.namespace_alive(), "the container's mount namespace survived"

        assert files.marker_alive(files.launch_marker(plan.dirs.root, uuid))  # type: ignore[attr-defined]
        assert (await rkt.status(uuid)).state == "running"
        restarted = Executor(settings=settings, rkt=RktCli(settings))
        observed = await restarted.ensure_started(plan)  # type: ignore[arg-type]
        assert observed.running
        assert observed.uuid == uuid
        # Adopted, not relaunched: the same supervisor still owns the pod.
        assert files.launch_marker(plan.dirs.root, uuid).read_text() == marker  # type: ignore[attr-defined]

        try:
            await restarted.stop(uuid, kill_timeout=10)
        except errors.RktError:
            if settings.rkt_path.endswith("rkt-sim"):
                raise
            # Real rkt's stop may fail on a host without systemd (the real-rkt issue's to fix):
            # end the pod as its cgroup holds it, all but the supervisor.
            _kill_cgroup(cgroup, but=supervisor.pid)
        # The supervisor removes the pod's cgroup once rkt has exited.
        deadline = time.monotonic() + 60
        while any((h.root / cgroup).exists() for h in hostns.hierarchies()):
            assert time.monotonic() < deadline, f"cgroup {cgroup} was not removed"
            await asyncio.sleep(0.1)
        # The supervisor (whose diagnostics go to the pod's stderr log) never needed a module
        # it had not loaded before it entered the host's mount namespace.
        stderr_log = files.log_files(plan.dirs.root, uuid)[1]  # type: ignore[attr-defined]
        assert "after leaving the agent's container" not in stderr_log.read_text(errors="replace")
        if network is not None:
            # The pod's network lives on the host; the agent removes the pod from its container,
            # which sees the host's netns and CNI state only through the chart's mounts
            # (Bidirectional /run/netns, /var/lib/cni): a container whose mount namespace
            # shares them, as those mounts do, must tear it all down.
            removal = subprocess.run(
                ["unshare", "--mount", "--propagation", "unchanged", "--",
                 *rkt.base_argv(), "rm", uuid],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert removal.returncode == 0, removal.stderr
            netns, allocations = network
            assert not netns.exists(), f"{netns} left on the host"
            assert not [a for a in allocations if a.exists()], "the pod's IP is still allocated"
    finally:
        with contextlib.suppress(Exception):
            await rkt.stop(uuid, force=True)
        _remove_cgroups(settings.host_cgroup)
        with contextlib.suppress(Exception):
            await rkt.rm(uuid)


async def test_pod_outlives_a_killed_container_and_is_adopted(
    container: Container, tmp_path: Path, images: dict[str, Path]
) -> None:
    settings = make_settings(
        tmp_path,
        host_launch="auto",
        host_namespaces_pid=HOST_PID,
        host_cgroup=f"rkt-operator-test-{uuidlib.uuid4().hex[:8]}",
    )
    await _escape_case(settings, container, tmp_path, images["sleeper"])


async def test_without_the_escape_the_container_kill_ends_the_pod(
    container: Container, tmp_path: Path, images: dict[str, Path]
) -> None:
    """The control: a supervisor left in the container dies with it, and so does the pod."""
    settings = make_settings(tmp_path, host_launch="never", host_namespaces_pid=HOST_PID)
    rkt = RktCli(settings)
    uuid, plan = await _start_in_container(container, settings, tmp_path, images["sleeper"])
    supervisor = _supervisor(settings, plan, uuid)
    assert supervisor.pid in container.pids()
    assert _mnt_ns(supervisor.pid) == container.namespace
    container.kill()
    assert not files.marker_alive(files.launch_marker(plan.dirs.root, uuid))  # type: ignore[attr-defined]
    assert (await rkt.status(uuid)).state != "running"


@pytest.mark.rkt
@pytest.mark.usefixtures("host_left_clean")
async def test_real_rkt_pod_outlives_a_killed_container(
    real_rkt: str, container: Container, tmp_path: Path, images: dict[str, Path]
) -> None:
    settings = _real_settings(
        real_rkt,
        tmp_path,
        host_launch="auto",
        host_namespaces_pid=HOST_PID,
        host_cgroup=f"rkt-operator-test-{uuidlib.uuid4().hex[:8]}",
    )
    await _escape_case(settings, container, tmp_path, images["sleeper"])
