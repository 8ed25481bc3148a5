"""Launching ``rkt run-prepared`` so that the pod outlives the agent.

Two ways, chosen by ``settings.launcher`` (``auto`` picks systemd when the host runs it,
i.e. ``/run/systemd/system`` exists):

- **systemd**: a transient unit ``rkt-<uuid>.service`` in ``machine.slice`` with
  ``KillMode=mixed`` (rkt's recommendation; kubelet and rktlet did the same) whose main
  process is ``rkt run-prepared`` itself: the host's systemd runs it, and the agent's own
  Python (inside its container) does not exist on the host, while rkt is mounted at the
  same path. systemd refuses a second unit of the same name, which makes the launch
  idempotent; the exit code comes from ``rkt status`` (apps' exit codes).
- **detached**: the ``shim`` supervisor (new session, double fork) claims the pod with its
  launch marker (so a launch is never done twice) and records rkt's exit status on disk, a
  fallback for when rkt reports no app exit code. When the agent runs in a container
  (``settings.host_launch``: its mount namespace is not the host's), the supervisor first
  enters the host's (``host_namespaces_pid``'s) mount, UTS, IPC, network and cgroup namespaces and
  moves into a host cgroup of its own, ``<host_cgroup>/<uuid>`` in every hierarchy
  (``hostns``), and only then claims the pod and runs rkt: neither the container's end (the
  kubelet kills every process of its cgroup), nor its memory limit, nor its mount namespace
  reaches the pod. ``launchplan`` decides all this as a value.

rkt's output goes to ``alloc/logs/<uuid>.stdout.0`` / ``.stderr.0`` of the task directory,
opened for appending (systemd: ``StandardOutput=append:``, systemd 240 or later), and is
rotated as ``logrotate`` describes; the limits of the plan are written to the pod's limits
file before the launch.

The argv of rkt itself comes from ``RktCli.run_prepared_command``. Before each launch the
second journald unit that rkt's host stage1 installs is masked in the prepared pod
(``stage1quirks``): otherwise a pod sometimes halts itself at boot with exit code 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Literal

from rkt_operator import errors
from rkt_operator.executor import files, launchplan, logrotate, stage1quirks
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.types import LaunchPlan
from rkt_operator.settings import Settings

log = logging.getLogger(__name__)

SYSTEMD_MARKER = Path("/run/systemd/system")
_LAUNCH_DEADLINE = 60.0
unit_name = launchplan.unit_name
systemd_run_argv = launchplan.systemd_run_argv


def resolve_kind(
    setting: Literal["auto", "systemd", "detached"], *, systemd_marker: Path = SYSTEMD_MARKER
) -> Literal["systemd", "detached"]:
    """``auto`` -> systemd when the host was booted with systemd, else detached."""
    return launchplan.resolve_kind(setting, systemd_host=systemd_marker.is_dir())


def in_container(host_pid: int = 1, proc: Path = Path("/proc")) -> bool:
    """Is this process in another mount namespace than ``host_pid`` (a container; with
    hostPID, PID 1 is the host's init)? False when that namespace cannot be read (logged)."""
    try:
        host = os.stat(proc / str(host_pid) / "ns" / "mnt").st_ino
    except OSError as exc:
        log.warning("cannot read the mount namespace of pid %d: %s", host_pid, exc.strerror)
        return False
    return os.stat(proc / "self" / "ns" / "mnt").st_ino != host


def shim_argv(
    rkt_argv: list[str],
    root: Path,
    uuid: str,
    *,
    foreground: bool = False,
    escape: launchplan.HostEscape | None = None,
) -> list[str]:
    """The supervisor of one pod, run by this interpreter."""
    return launchplan.shim_argv(
        rkt_argv, root, uuid, python=sys.executable, foreground=foreground, escape=escape
    )


class Launcher:
    def __init__(
        self, *, settings: Settings, rkt: RktCli, systemd_marker: Path = SYSTEMD_MARKER
    ) -> None:
        self.settings = settings
        self.rkt = rkt
        self.kind = resolve_kind(settings.launcher, systemd_marker=systemd_marker)
        self._in_container: bool | None = None  # probed at the first detached launch
        self._env = settings.host_environment

    def in_container(self) -> bool:
        """Whether the agent runs in a container (asked only where it matters: a detached
        launch with ``host_launch: auto``; node commands never probe)."""
        if self.kind != "detached" or self.settings.host_launch != "auto":
            return False
        if self._in_container is None:
            self._in_container = in_container(self.settings.host_namespaces_pid)
        return self._in_container

    async def launch(self, plan: LaunchPlan, uuid: str) -> None:
        """Start ``rkt run-prepared`` for ``uuid`` detached from the agent. Returns once the
        launch is under way (or was already), not when the pod runs."""
        rkt_argv = self.rkt.run_prepared_command(plan, uuid)
        root = plan.dirs.root
        limits = logrotate.LogLimits(plan.log_max_files, plan.log_max_file_bytes)
        try:
            files.logs_dir(root).mkdir(parents=True, exist_ok=True)
            files.write_log_limits(files.log_limits_file(root, uuid), limits)
        except OSError as exc:
            raise errors.RktError(f"cannot prepare the log files of pod {uuid}: {exc}") from exc
        # rkt's host stage1 would boot two journalds, and sometimes halts the pod for it.
        await asyncio.to_thread(stage1quirks.mask_duplicate_journald, self.settings.rkt_dir, uuid)
        launch = launchplan.plan_launch(
            rkt_argv,
            uuid,
            root=root,
            kind=self.kind,
            host_launch=self.settings.host_launch,
            in_container=self.in_container(),
            host_pid=self.settings.host_namespaces_pid,
            cgroup_parent=self.settings.host_cgroup,
            python=sys.executable,
            path_env=self._env.get("PATH"),
        )
        argv = list(launch.argv)
        log.info(
            "launching pod uuid=%s launcher=%s host_cgroup=%s",
            uuid,
            self.kind,
            launch.escape.cgroup if launch.escape else "-",
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=root,
                env=self._env,
                start_new_session=True,
            )
        except OSError as exc:
            raise errors.RktUnavailable(f"cannot launch pod {uuid}: {exc}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), _LAUNCH_DEADLINE)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise errors.RktTimeout(f"launching pod {uuid} did not finish") from None
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if self.kind == "systemd":
            if proc.returncode != 0 and "already" not in stderr:
                raise errors.RktError(
                    f"systemd-run failed for pod {uuid}: {stderr.strip()[-300:]}",
                    argv=argv,
                    returncode=proc.returncode,
                    stderr=stderr[-4096:],
                )
            return
        line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
        if line.startswith("started"):
            log.info("pod launched uuid=%s supervisor=%s", uuid, line.split()[1:])
        elif line == "already-launched":
            log.info("pod already launched uuid=%s", uuid)
        else:
            raise errors.RktError(
                f"launching pod {uuid} failed: {line or stderr.strip()[-300:]}",
                argv=argv,
                returncode=proc.returncode,
                stdout=stdout[-4096:],
                stderr=stderr[-4096:],
            )

    async def launched(self, root: Path, uuid: str) -> bool:
        """Has a launch of this (still prepared) pod begun? (An exit record means it ran or
        failed to; the caller looks at it.)"""
        marker = files.launch_marker(root, uuid)
        if files.marker_alive(marker) or files.exit_file(root, uuid).exists():
            return True
        if self.kind == "systemd" and await self._unit_active(uuid):
            return True  # the unit exists but its supervisor has not claimed the pod yet
        # A marker left by a supervisor that died before running rkt: forget it.
        files.remove_quietly(marker)
        return False

    async def _unit_active(self, uuid: str) -> bool:
        proc = await asyncio.create_subprocess_exec(
            "systemctl",
            "is-active",
            "--quiet",
            f"{unit_name(uuid)}.service",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            return await asyncio.wait_for(proc.wait(), _LAUNCH_DEADLINE) == 0
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return False
