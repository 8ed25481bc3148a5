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
  fallback for when rkt reports no app exit code.

rkt's output goes to ``alloc/logs/<uuid>.stdout.0`` / ``.stderr.0`` of the task directory,
opened for appending (systemd: ``StandardOutput=append:``, systemd 240 or later), and is
rotated as ``logrotate`` describes; the limits of the plan are written to the pod's limits
file before the launch.

The argv of rkt itself comes from ``RktCli.run_prepared_command``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Literal

from rkt_operator import errors
from rkt_operator.executor import files, logrotate
from rkt_operator.rkt.cli import RktCli
from rkt_operator.rkt.types import LaunchPlan
from rkt_operator.settings import Settings

log = logging.getLogger(__name__)

SYSTEMD_MARKER = Path("/run/systemd/system")
_LAUNCH_DEADLINE = 60.0


def resolve_kind(
    setting: Literal["auto", "systemd", "detached"], *, systemd_marker: Path = SYSTEMD_MARKER
) -> Literal["systemd", "detached"]:
    """``auto`` -> systemd when the host was booted with systemd, else detached."""
    if setting == "auto":
        return "systemd" if systemd_marker.is_dir() else "detached"
    return setting


def unit_name(uuid: str) -> str:
    return f"rkt-{uuid}"


def systemd_run_argv(
    command: list[str],
    uuid: str,
    *,
    workdir: Path,
    path_env: str | None,
    logs: tuple[Path, Path] | None = None,
) -> list[str]:
    """``systemd-run`` for one pod: transient unit, machine slice, mixed kill mode; output
    appended to the ``logs`` files (stdout, stderr) when given."""
    argv = [
        "systemd-run",
        f"--unit={unit_name(uuid)}",
        "--slice=machine",
        "-p",
        "KillMode=mixed",
        "--collect",
        f"--working-directory={workdir}",
    ]
    if logs is not None:
        argv += ["-p", f"StandardOutput=append:{logs[0]}", "-p", f"StandardError=append:{logs[1]}"]
    if path_env:
        argv.append(f"--setenv=PATH={path_env}")
    return [*argv, "--", *command]


def shim_argv(rkt_argv: list[str], root: Path, uuid: str, *, foreground: bool = False) -> list[str]:
    stdout, stderr = files.log_files(root, uuid)
    return [
        sys.executable,
        "-m",
        "rkt_operator.executor.shim",
        *(["--foreground"] if foreground else []),
        f"--marker={files.launch_marker(root, uuid)}",
        f"--exit-file={files.exit_file(root, uuid)}",
        f"--stdout={stdout}",
        f"--stderr={stderr}",
        f"--log-limits={files.log_limits_file(root, uuid)}",
        "--",
        *rkt_argv,
    ]


class Launcher:
    def __init__(
        self, *, settings: Settings, rkt: RktCli, systemd_marker: Path = SYSTEMD_MARKER
    ) -> None:
        self.settings = settings
        self.rkt = rkt
        self.kind = resolve_kind(settings.launcher, systemd_marker=systemd_marker)
        self._env = settings.host_environment

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
        if self.kind == "systemd":
            argv = systemd_run_argv(
                rkt_argv,
                uuid,
                workdir=root,
                path_env=self._env.get("PATH"),
                logs=files.log_files(root, uuid),
            )
        else:
            argv = shim_argv(rkt_argv, root, uuid)
        log.info("launching pod uuid=%s launcher=%s", uuid, self.kind)
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
