"""``rkt enter``: run a command inside a running pod's app and exit with its status.

As root the command joins the app process's mount and UTS namespaces and its root (so it
sees the overlay rootfs and the volumes at their targets) with the app's environment; it
runs as root, like rkt's stage1 enter. Without root (the documented approximation) it runs
on the host with the app's rootfs as working directory. stdin/stdout/stderr pass through;
a command killed by a signal makes ``enter`` die of the same signal.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from rkt_sim import appenv, isolation, pods
from rkt_sim.context import Context
from rkt_sim.errors import SimError
from rkt_sim.flags import GLOBAL_FLAGS, FlagSet, Parsed, str_flag

USAGE = "Usage:\n  rkt enter [--app=APPNAME] UUID [CMD [ARGS ...]]\n"
FLAGSET = FlagSet(
    (*GLOBAL_FLAGS, str_flag("app", "name of the app to enter within the specified pod"))
)
DEFAULT_COMMAND = "/bin/bash"


def _choose_app(
    ctx: Context, apps: list[dict[str, object]], wanted: str | None
) -> dict[str, object]:
    if wanted:
        for app in apps:
            if app.get("name") == wanted:
                return app
        raise SimError(f'unable to determine app name: app "{wanted}" not found in pod')
    if len(apps) == 1:
        return apps[0]
    if not apps:
        raise SimError("unable to determine app name: pod has no apps")
    ctx.err("pod contains multiple apps:")
    for app in apps:
        ctx.err(f"\t{app.get('name')}")
    raise SimError('unable to determine app name: specify app using "rkt enter --app= ..."')


def run(ctx: Context, parsed: Parsed) -> int:
    ctx.require_root()
    words = parsed.positionals or parsed.rest
    if not words:
        raise SimError(usage=True)
    target, *command = words
    pod = pods.resolve(ctx.data_dir, target)
    if pod.state != "running":
        raise SimError(f'pod "{pod.uuid}" isn\'t currently running')
    manifest = pod.manifest() or {}
    runtime_app = _choose_app(ctx, list(manifest.get("apps") or []), parsed.last("app"))
    name = str(runtime_app["name"])
    pid_name = "init-pid" if os.geteuid() == 0 else "pid"
    try:
        pid = int((pod.path / "appsinfo" / name / pid_name).read_text().strip())
    except (OSError, ValueError):
        raise SimError(f'failed to find the process of app "{name}"') from None
    if not Path(f"/proc/{pid}").exists():
        raise SimError(f'app "{name}" is not running')
    if not command:
        ctx.err(f'no command specified, assuming "{DEFAULT_COMMAND}"')
        command = [DEFAULT_COMMAND]
    return _execute(pod, runtime_app, pid, command)


def _execute(pod: pods.Pod, runtime_app: dict[str, object], pid: int, command: list[str]) -> int:
    app = runtime_app.get("app") or {}
    workdir = str(app.get("workingDirectory") or "/") if isinstance(app, dict) else "/"
    rootfs = appenv.stage2_rootfs(pod.path, str(runtime_app["name"]))
    plan = isolation.ChildPlan(rootfs=str(rootfs), isolate=False, workdir=workdir)
    keep: tuple[int, ...] = ()
    executable = command[0]
    if os.geteuid() == 0:
        plan.enter_pid = pid
        plan.enter_root_fd = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
        keep = (plan.enter_root_fd,)
    else:
        candidate = rootfs / command[0].lstrip("/")
        executable = str(candidate) if candidate.exists() else command[0]
    try:
        process = subprocess.Popen(
            command,
            executable=executable,
            env=appenv.environment(runtime_app),
            preexec_fn=lambda: isolation.prepare_child(plan),
            pass_fds=keep,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SimError(f"failed to run {command[0]!r}: {exc}") from None
    finally:
        for fd in keep:
            os.close(fd)
    code = process.wait()
    if code < 0:
        isolation.die_by_signal(-code)
    return code
