"""A pod's output files against rkt-sim: rotated by its supervisor within the plan's limits,
new limits picked up while it runs, and ``rkt-operator logs`` reading them (as a process,
with the agent's settings flags)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from rkt_devkit.aci import build_aci
from rkt_operator.executor import files, logrotate
from rkt_operator.executor.logrotate import LogLimits
from rkt_operator.executor.service import Executor
from rkt_operator.rkt.types import LaunchPlan, PodObservation
from rkt_operator.settings import Settings
from simrkt import identity, make_plan, rkt_sim_path

MIB = 1024 * 1024
WAIT_SECONDS = 180.0
# Eight bursts of ~1.3 MB (seq 1 200000), each announced, then a last line on each stream.
BURSTS = (
    "for i in 1 2 3 4 5 6 7 8; do echo burst-$i; seq 1 200000; sleep 1; done; "
    "echo end-marker; echo err-end >&2; sleep 3600"
)
TICKER = "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.05; done"
CHATTY = "echo hello-err >&2; for i in 1 2 3 4 5; do echo out-$i; done; sleep 3600"
SECOND = "echo second-pod; sleep 3600"
COUNTDOWN = (
    "echo ready; while [ ! -f /alloc/go ]; do sleep 0.1; done; "
    "for i in $(seq 1 15); do echo line-$i; sleep 0.2; done; exit 0"
)


@pytest.fixture(scope="module")
def log_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("log-images")
    scripts = {
        "bursts": BURSTS,
        "ticker": TICKER,
        "chatty": CHATTY,
        "countdown": COUNTDOWN,
        "second": SECOND,
    }
    return {
        key: build_aci(out / f"{key}.aci", name=f"example.com/{key}", exec=("/bin/sh", "-c", s))
        for key, s in scripts.items()
    }


def plan_for(settings: Settings, image: Path, max_files: int, max_bytes: int) -> LaunchPlan:
    plan = make_plan(settings, identity(), image, discover_network=False)
    return replace(plan, log_max_files=max_files, log_max_file_bytes=max_bytes)


def stdout_files(plan: LaunchPlan, uuid: str) -> list[Path]:
    """The stream's files, oldest first."""
    directory = files.logs_dir(plan.dirs.root)
    found = []
    for path in directory.iterdir():
        parsed = logrotate.parse_name(path.name)
        if parsed is not None and parsed[:2] == (uuid, "stdout"):
            found.append((parsed[2], path))
    return [path for _, path in sorted(found, reverse=True)]


async def wait_until(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not check():
        assert loop.time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.25)


async def test_supervisor_rotates_and_keeps_at_most_max_files(
    executor: Executor, settings: Settings, log_images: dict[str, Path]
) -> None:
    plan = plan_for(settings, log_images["bursts"], max_files=3, max_bytes=MIB)
    pod = await executor.ensure_started(plan)
    out, err = files.log_files(plan.dirs.root, pod.uuid)
    most = 0

    def finished_writing() -> bool:
        nonlocal most
        names = stdout_files(plan, pod.uuid)
        most = max(most, len(names))
        return b"end-marker" in out.read_bytes() and out.stat().st_size < MIB

    await wait_until(finished_writing, "all bursts written and the current file rotated")
    kept = stdout_files(plan, pod.uuid)
    assert [p.name for p in kept] == [f"{pod.uuid}.stdout.{n}" for n in (2, 1, 0)]
    assert most <= 3
    for rotated in kept[:2]:
        assert rotated.stat().st_size >= MIB  # rotated only once the limit was reached
    text = b"".join(p.read_bytes() for p in kept)
    assert b"burst-1\n" not in text  # the oldest output was deleted
    assert text.endswith(b"end-marker\n")
    assert err.read_bytes().endswith(b"err-end\n")
    assert files.read_log_limits(files.log_limits_file(plan.dirs.root, pod.uuid)) == LogLimits(
        3, MIB
    )


async def test_new_limits_reach_the_running_supervisor(
    executor: Executor, settings: Settings, log_images: dict[str, Path]
) -> None:
    plan = plan_for(settings, log_images["ticker"], max_files=10, max_bytes=10 * MIB)
    pod = await executor.ensure_started(plan)
    out = files.log_files(plan.dirs.root, pod.uuid)[0]
    await wait_until(lambda: out.exists() and out.stat().st_size > 400, "some output")
    assert len(stdout_files(plan, pod.uuid)) == 1
    # What the agent does on a live update, without the agent: only the supervisor rotates.
    files.write_log_limits(files.log_limits_file(plan.dirs.root, pod.uuid), LogLimits(2, 200))
    rotated = out.with_name(f"{pod.uuid}.stdout.1")
    await wait_until(rotated.exists, "a rotation under the new limits")
    for _ in range(12):
        assert len(stdout_files(plan, pod.uuid)) <= 2
        await asyncio.sleep(0.25)
    observed = await executor.observe(pod.uuid)
    assert observed is not None
    assert observed.running


async def test_pod_outlives_its_supervisor_and_the_agent_rotates_instead(
    executor: Executor, settings: Settings, log_images: dict[str, Path]
) -> None:
    plan = plan_for(settings, log_images["chatty"], max_files=10, max_bytes=10 * MIB)
    pod = await executor.ensure_started(plan)
    out, err = files.log_files(plan.dirs.root, pod.uuid)
    await wait_until(lambda: out.exists() and b"out-5" in out.read_bytes(), "output")
    marker = json.loads(files.launch_marker(plan.dirs.root, pod.uuid).read_text())
    supervisor = psutil.Process(marker["pid"])
    supervisor.kill()
    supervisor.wait(timeout=60)
    # Output to a file, never a pipe: the pod does not notice.
    observed = await executor.observe(pod.uuid)
    assert observed is not None
    assert observed.running
    assert await executor.logs.tend(identity(), pod.uuid, LogLimits(4, 8)) == 2
    limits_file = files.log_limits_file(plan.dirs.root, pod.uuid)
    assert files.read_log_limits(limits_file) == LogLimits(4, 8)
    assert out.with_name(f"{pod.uuid}.stdout.1").read_bytes().endswith(b"out-5\n")
    assert err.with_name(f"{pod.uuid}.stderr.1").read_bytes() == b"hello-err\n"
    assert (out.read_bytes(), err.read_bytes()) == (b"", b"")
    assert await executor.logs.tend(identity(), pod.uuid, LogLimits(4, 8)) == 0  # not due
    await executor.stop(pod.uuid, kill_timeout=5)
    await executor.remove(pod.uuid)
    assert not limits_file.exists()


def logs_argv(settings: Settings, *args: str) -> list[str]:
    return [
        str(Path(sys.executable).parent / "rkt-operator"),
        "logs",
        *args,
        f"--rkt-path={rkt_sim_path()}",
        f"--rkt-dir={settings.rkt_dir}",
        f"--rkt-local-config={settings.rkt_local_config}",
        f"--task-root={settings.task_root}",
    ]


def logs_command(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    argv = logs_argv(settings, *args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_SECONDS, check=False)


async def started_with_output(executor: Executor, plan: LaunchPlan, text: bytes) -> PodObservation:
    pod = await executor.ensure_started(plan)
    out = files.log_files(plan.dirs.root, pod.uuid)[0]
    await wait_until(lambda: out.exists() and text in out.read_bytes(), "output")
    return pod


async def test_logs_command_prints_the_tasks_output(
    executor: Executor, settings: Settings, log_images: dict[str, Path]
) -> None:
    plan = plan_for(settings, log_images["chatty"], max_files=3, max_bytes=10 * MIB)
    pod = await started_with_output(executor, plan, b"out-5")
    done = await asyncio.to_thread(logs_command, settings, "default/web")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "".join(f"out-{i}\n" for i in range(1, 6))
    done = await asyncio.to_thread(logs_command, settings, "default/web", "--tail", "2")
    assert done.stdout == "out-4\nout-5\n"
    done = await asyncio.to_thread(logs_command, settings, "default/web", "--stderr")
    assert done.stdout == "hello-err\n"
    done = await asyncio.to_thread(logs_command, settings, "default/nobody")
    assert done.returncode == 1
    assert "no pod of task default/nobody" in done.stderr
    done = await asyncio.to_thread(logs_command, settings, "Not A Task")
    assert done.returncode == 2
    done = await asyncio.to_thread(logs_command, settings, "default/web", "--tail=-1")
    assert (done.returncode, done.stdout) == (2, "")
    # rkt no longer knows the pod: the files in the task directory still tell.
    await executor.stop(pod.uuid, kill_timeout=5)
    await executor.remove(pod.uuid)
    done = await asyncio.to_thread(logs_command, settings, "default/web", "--tail", "1")
    assert (done.returncode, done.stdout) == (0, "out-5\n")


async def test_logs_of_the_previous_pod_since_a_duration_and_of_one_object_only(
    executor: Executor, settings: Settings, log_images: dict[str, Path]
) -> None:
    """What ``kubectl rkt logs`` passes on: ``--previous`` (the pod before the newest, after
    a restart), ``--since`` (whole files written within the duration) and ``--uid``."""
    first = make_plan(settings, identity(), log_images["chatty"], discover_network=False)
    pod = await started_with_output(executor, first, b"out-5")
    done = await asyncio.to_thread(logs_command, settings, "default/web", "--previous")
    assert done.returncode == 1
    assert "no previous pod of task default/web on this node" in done.stderr
    await executor.stop(pod.uuid, kill_timeout=5)
    ident = identity(generation=2)
    second = make_plan(settings, ident, log_images["second"], discover_network=False)
    newer = await started_with_output(executor, second, b"second-pod")
    done = await asyncio.to_thread(logs_command, settings, "default/web")
    assert (done.returncode, done.stdout) == (0, "second-pod\n")
    for flag in ("--previous", "-p"):
        done = await asyncio.to_thread(logs_command, settings, "default/web", flag)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "".join(f"out-{i}\n" for i in range(1, 6))
    done = await asyncio.to_thread(
        logs_command, settings, "default/web", "--previous", "--stderr", "--tail=1"
    )
    assert done.stdout == "hello-err\n"
    # --uid: the object's own uid is served; another object of the same name is refused.
    done = await asyncio.to_thread(logs_command, settings, "default/web", f"--uid={ident.uid}")
    assert done.stdout == "second-pod\n"
    other = "99999999-9999-4999-8999-999999999999"
    done = await asyncio.to_thread(logs_command, settings, "default/web", f"--uid={other}")
    assert done.returncode == 1
    assert f"no pod of task default/web (uid {other}) on this node" in done.stderr
    # --since: files last written within the duration; the first pod's are made an hour old.
    for path in files.log_files(first.dirs.root, pod.uuid):
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    done = await asyncio.to_thread(logs_command, settings, "default/web", "-p", "--since=5m")
    assert (done.returncode, done.stdout) == (0, "")
    done = await asyncio.to_thread(logs_command, settings, "default/web", "-p", "--since=2h")
    assert done.stdout.endswith("out-5\n")
    done = await asyncio.to_thread(logs_command, settings, "default/web", "--since=1m30s")
    assert done.stdout == "second-pod\n"
    done = await asyncio.to_thread(logs_command, settings, "default/web", "--since=soon")
    assert done.returncode == 2
    assert "--since wants a duration" in done.stderr
    await executor.stop(newer.uuid, kill_timeout=5)


async def test_logs_follow_reads_across_rotations_until_the_pod_exits(
    executor: Executor, settings: Settings, log_images: dict[str, Path]
) -> None:
    plan = plan_for(settings, log_images["countdown"], max_files=4, max_bytes=20)
    pod = await started_with_output(executor, plan, b"ready\n")
    follow = await asyncio.create_subprocess_exec(
        *logs_argv(settings, "default/web", "--follow"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert follow.stdout is not None
    first = await asyncio.wait_for(follow.stdout.readline(), WAIT_SECONDS)
    assert first == b"ready\n"
    (plan.dirs.alloc / "go").touch()  # the app starts counting now
    rest, errors = await asyncio.wait_for(follow.communicate(), WAIT_SECONDS)
    assert follow.returncode == 0, errors
    assert rest.decode() == "".join(f"line-{i}\n" for i in range(1, 16))
    kept = stdout_files(plan, pod.uuid)
    assert 2 <= len(kept) <= 4  # it was rotated while being followed


async def test_logs_follow_ends_when_its_input_ends(
    executor: Executor, settings: Settings, log_images: dict[str, Path]
) -> None:
    """``--end-with-stdin``, which ``kubectl rkt logs -f`` passes: the follower ends once its
    input does (as it does when the pods/exec session's client goes), the pod runs on.
    Without it, the end of the input changes nothing."""
    plan = plan_for(settings, log_images["ticker"], max_files=3, max_bytes=10 * MIB)
    pod = await started_with_output(executor, plan, b"tick-3\n")

    async def follower(*flags: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *logs_argv(settings, "default/web", "--follow", *flags),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), WAIT_SECONDS) == b"tick-0\n"
        return process

    async def tick(process: asyncio.subprocess.Process) -> int:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), WAIT_SECONDS)
        assert line.startswith(b"tick-"), line
        return int(line[5:])

    ending = await follower("--end-with-stdin")
    plain = await follower()
    for process in (ending, plain):
        assert process.stdin is not None
        process.stdin.close()
    assert ending.stdout is not None
    await asyncio.wait_for(ending.stdout.read(), WAIT_SECONDS)  # up to its end
    assert await asyncio.wait_for(ending.wait(), WAIT_SECONDS) == 0
    # The other one goes on: ticks the app writes from now on still reach it.
    now = max(int(p.read_bytes().split(b"tick-")[-1]) for p in stdout_files(plan, pod.uuid))
    while await tick(plain) <= now + 3:
        pass
    assert plain.returncode is None
    plain.terminate()
    await plain.wait()
    observed = await executor.observe(pod.uuid)
    assert observed is not None
    assert not observed.finished
    await executor.stop(pod.uuid, kill_timeout=5)
