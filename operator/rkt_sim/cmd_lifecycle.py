"""``rkt stop``, ``rkt rm`` and ``rkt gc``: ending and removing pods.

``stop`` signals the pod's ``ppid`` (the run-prepared process) and returns at once;
``--force`` SIGKILLs the ppid (the simulated stage1, which would record app status) first,
then the apps' process groups and its other children.
Deleting a pod takes its exclusive lock, releases its network leases, unmounts anything left
below it and removes the directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from rkt_sim import gofmt, network, pods
from rkt_sim.cmd_status import pod_argument
from rkt_sim.context import Context
from rkt_sim.errors import FlagError, SimError
from rkt_sim.flags import GLOBAL_FLAGS, FlagSet, Parsed, bool_flag, str_flag

STOP_USAGE = "Usage:\n  rkt stop --uuid-file=FILE | UUID ...\n"
RM_USAGE = "Usage:\n  rkt rm --uuid-file=FILE | UUID ...\n"
GC_USAGE = "Usage:\n  rkt gc [--grace-period=duration] [--expire-prepared=duration] [--mark-only]\n"

STOP_FLAGS = FlagSet(
    (
        *GLOBAL_FLAGS,
        bool_flag("force", "forced stopping"),
        str_flag("uuid-file", "read pod UUID from file instead of argument"),
    )
)
RM_FLAGS = FlagSet(
    (*GLOBAL_FLAGS, str_flag("uuid-file", "read pod UUID from file instead of argument"))
)
GC_FLAGS = FlagSet(
    (
        *GLOBAL_FLAGS,
        str_flag("grace-period", "duration to wait before discarding inactive pods from garbage"),
        str_flag("expire-prepared", "duration to wait before expiring prepared pods"),
        bool_flag("mark-only", "move to the garbage directories without actually deleting"),
    )
)


# -- stop ---------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found.extend(int(x) for x in text.split())
    return found


def _app_pids(pod: pods.Pod) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(pod.path / "appsinfo"):
            with contextlib.suppress(OSError, ValueError):
                found.append(int(Path(entry.path, "pid").read_text().strip()))
    return found


class StopEntrypointFailed(Exception):
    """stage1's stop entrypoint failed: it printed its own line and exited 254."""


def _stop_pod(pod: pods.Pod, force: bool) -> None:
    try:
        ppid = int((pod.path / "ppid").read_text().strip())
    except FileNotFoundError:
        # A pod shows "running" (with its networks) before stage1 writes ppid; rkt's stop
        # entrypoint then fails and stop reports it, without retrying.
        sys.stderr.write("error reading pid: open ppid: no such file or directory\n")
        raise StopEntrypointFailed from None
    if not force:
        os.kill(ppid, signal.SIGTERM)
        return
    # The run-prepared process plays stage1's reaper here (it writes the apps' exit status):
    # it goes first, so a forced stop records no app status, as with rkt, where SIGKILL of
    # the pod's systemd and nspawn leaves no reaper to write one.
    children = _children(ppid)
    os.kill(ppid, signal.SIGKILL)
    for pid in _app_pids(pod):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def run_stop(ctx: Context, parsed: Parsed) -> int:
    force = parsed.boolean("force")
    errors = 0
    for arg in pod_argument(parsed, allow_many=True):
        try:
            pod = pods.resolve(ctx.data_dir, arg)
        except SimError as exc:
            ctx.err(f"cannot get pod: {exc.message}")
            errors += 1
            continue
        state = pod.state
        if state in pods.AFTER_RUN:
            ctx.out(f"pod {gofmt.quote(pod.uuid)} is already stopped")
            continue
        if state != "running":
            ctx.err(f"pod {gofmt.quote(pod.uuid)} is not running")
            errors += 1
            continue
        try:
            _stop_pod(pod, force)
        except StopEntrypointFailed:
            ctx.err(f"error stopping {gofmt.quote(pod.uuid)}: exit status 254")
            errors += 1
            continue
        except (OSError, ValueError) as exc:
            ctx.err(f"error stopping {gofmt.quote(pod.uuid)}: {exc}")
            errors += 1
            continue
        ctx.out(gofmt.quote(pod.uuid))
    if errors:
        ctx.err(f"failed to stop {errors} pod(s)")
        return 254
    return 0


# -- rm / deletion ---------------------------------------------------------------------------


def delete_pod(ctx: Context, pod: pods.Pod) -> bool:
    """Lock and delete a pod that is garbage (or exited garbage); report on failure."""
    fd = pods.lock_for_delete(pod.path)
    if fd is None:
        ctx.err(f"pod {gofmt.quote(pod.uuid)} is currently being deleted")
        return False
    try:
        network.release(ctx.data_dir, pod.uuid, pod.net_info())
        pods.delete_tree(pod.path)
    finally:
        os.close(fd)
    return True


def _remove(ctx: Context, pod: pods.Pod) -> bool:
    state = pod.state
    quoted = gofmt.quote(pod.uuid)
    if state == "running":
        ctx.err(f"pod {quoted} is currently running")
        return False
    if state in ("embryo", "preparing"):
        ctx.err(f"pod {quoted} is currently being prepared")
        return False
    if state in ("deleting", "exited deleting"):
        ctx.err(f"pod {quoted} is currently being deleted")
        return False
    try:
        if state == "aborted prepare":
            ctx.err(f"moving failed prepare {quoted} to garbage")
            pod.move("garbage")
        elif state == "prepared":
            ctx.err(f"moving expired prepared pod {quoted} to garbage")
            pod.move("garbage")
        elif state == "exited":
            pod.move("exited-garbage")
    except OSError as exc:
        ctx.err(f"unable to move pod {quoted} to garbage: {exc}")
        return False
    return delete_pod(ctx, pod)


def run_rm(ctx: Context, parsed: Parsed) -> int:
    ctx.require_root()
    uuid_file = parsed.last("uuid-file")
    if uuid_file:
        try:
            args = [Path(uuid_file).read_text().strip()]
        except OSError as exc:
            raise SimError(f"unable to read UUID from file: {exc}") from None
    else:
        args = pod_argument(parsed, allow_many=True)
    failed = False
    for arg in args:
        try:
            pod = pods.resolve(ctx.data_dir, arg)
        except SimError as exc:
            ctx.err(f"cannot get pod: {exc.message}")
            failed = True
            continue
        if _remove(ctx, pod):
            ctx.out(gofmt.quote(pod.uuid))
        else:
            failed = True
    if failed:
        ctx.err("failed to remove one or more pods")
        return 254
    return 0


# -- gc -------------------------------------------------------------------------------------------


def _duration(parsed: Parsed, flag: str, default: str) -> int:
    value = parsed.last(flag, default) or default
    try:
        return gofmt.parse_duration(value)
    except ValueError as exc:
        raise FlagError(f'invalid argument "{value}" for "--{flag}" flag: {exc}') from None


def _ctime_ns(pod: pods.Pod) -> int:
    try:
        return pod.path.stat().st_ctime_ns
    except OSError:
        return time.time_ns()


def run_gc(ctx: Context, parsed: Parsed) -> int:
    ctx.require_root()
    grace = _duration(parsed, "grace-period", "30m0s")
    expire = _duration(parsed, "expire-prepared", "24h0m0s")
    for pod in pods.walk(ctx.data_dir, ("run",)):
        if pod.state == "exited":
            ctx.err(f"moving pod {gofmt.quote(pod.uuid)} to garbage")
            with contextlib.suppress(OSError):
                pod.move("exited-garbage")
    for pod in pods.walk(ctx.data_dir, ("prepare",)):
        if pod.state == "aborted prepare":
            ctx.err(f"moving failed prepare {gofmt.quote(pod.uuid)} to garbage")
            with contextlib.suppress(OSError):
                pod.move("garbage")
    if parsed.boolean("mark-only"):
        return 0
    now = time.time_ns()
    for pod in pods.walk(ctx.data_dir, ("prepared",)):
        if _ctime_ns(pod) + expire < now:
            ctx.err(f"moving expired prepared pod {gofmt.quote(pod.uuid)} to garbage")
            with contextlib.suppress(OSError):
                pod.move("garbage")
    for pod in pods.walk(ctx.data_dir, ("exited-garbage",)):
        if _ctime_ns(pod) + grace <= now:
            if pod.state == "exited garbage":
                ctx.out(f"Garbage collecting pod {gofmt.quote(pod.uuid)}")
                delete_pod(ctx, pod)
        else:
            ctx.err(
                f"pod {gofmt.quote(pod.uuid)} not removed: still within grace period "
                f"({gofmt.format_duration(grace)})"
            )
    for pod in pods.walk(ctx.data_dir, ("garbage",)):
        if pod.state == "garbage":
            ctx.out(f"Garbage collecting pod {gofmt.quote(pod.uuid)}")
            delete_pod(ctx, pod)
    return 0
