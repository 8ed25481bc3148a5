"""How one pod is launched, decided as a value (pure: no processes, no files).

The launcher observes the node (does the host run systemd? is the agent's mount namespace
PID 1's?) and hands the observations here; what comes back is the argv to run and, for the
detached launcher, where its supervisor goes: into the host's namespaces and a host cgroup of
its own (``HostEscape``), so that the end of the agent's container (a restart, an upgrade, its
memory limit, an eviction) never reaches the pod. Only the executor acts on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rkt_operator.executor import files

LaunchKind = Literal["systemd", "detached"]
# The host's namespaces the supervisor enters (PID 1's, or kthreadd's): its file system view
# (rkt, stage1, the task root and /sys/fs/cgroup are host paths there), hostname, IPC,
# network, and cgroup namespace (a container's private one, usual on cgroup v2, would confine
# cgroup moves to its own subtree). Not the PID namespace: the agent runs with hostPID.
HOST_NAMESPACES = ("mnt", "uts", "ipc", "net", "cgroup")


def resolve_kind(
    setting: Literal["auto", "systemd", "detached"], *, systemd_host: bool
) -> LaunchKind:
    """``auto`` -> systemd when the host was booted with systemd, else detached."""
    if setting == "auto":
        return "systemd" if systemd_host else "detached"
    return setting


@dataclass(frozen=True)
class HostEscape:
    """Where a detached supervisor moves before it runs rkt: the namespaces of ``pid``
    (``namespaces``) and ``cgroup`` (relative to the root of every cgroup hierarchy)."""

    pid: int
    namespaces: tuple[str, ...]
    cgroup: str


def host_escape(
    setting: Literal["auto", "always", "never"],
    *,
    kind: LaunchKind,
    in_container: bool,
    host_pid: int,
    cgroup_parent: str,
    uuid: str,
) -> HostEscape | None:
    """The escape of a detached launch: ``always``, or ``auto`` when the agent is not in the
    mount namespace of ``host_pid`` (a container). A systemd unit is the host's already."""
    if kind != "detached" or setting == "never" or (setting == "auto" and not in_container):
        return None
    return HostEscape(pid=host_pid, namespaces=HOST_NAMESPACES, cgroup=f"{cgroup_parent}/{uuid}")


def unit_name(uuid: str) -> str:
    return f"rkt-{uuid}"


def systemd_run_argv(
    command: Sequence[str],
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


def shim_argv(
    rkt_argv: Sequence[str],
    root: Path,
    uuid: str,
    *,
    python: str,
    foreground: bool = False,
    escape: HostEscape | None = None,
) -> list[str]:
    """The detached supervisor (``executor.shim``) of one pod, run by ``python``."""
    stdout, stderr = files.log_files(root, uuid)
    argv = [
        python,
        "-m",
        "rkt_operator.executor.shim",
        *(["--foreground"] if foreground else []),
        f"--marker={files.launch_marker(root, uuid)}",
        f"--exit-file={files.exit_file(root, uuid)}",
        f"--stdout={stdout}",
        f"--stderr={stderr}",
        f"--log-limits={files.log_limits_file(root, uuid)}",
    ]
    if escape is not None:
        argv += [
            f"--enter-namespaces-of={escape.pid}",
            f"--namespaces={','.join(escape.namespaces)}",
            f"--cgroup={escape.cgroup}",
        ]
    return [*argv, "--", *rkt_argv]


@dataclass(frozen=True)
class Launch:
    """What the launcher runs for one pod."""

    kind: LaunchKind
    argv: tuple[str, ...]
    escape: HostEscape | None


def plan_launch(
    rkt_argv: Sequence[str],
    uuid: str,
    *,
    root: Path,
    kind: LaunchKind,
    host_launch: Literal["auto", "always", "never"],
    in_container: bool,
    host_pid: int,
    cgroup_parent: str,
    python: str,
    path_env: str | None,
) -> Launch:
    """The launch of pod ``uuid`` (its ``rkt run-prepared`` argv is ``rkt_argv``)."""
    if kind == "systemd":
        argv = systemd_run_argv(
            rkt_argv, uuid, workdir=root, path_env=path_env, logs=files.log_files(root, uuid)
        )
        return Launch(kind=kind, argv=tuple(argv), escape=None)
    escape = host_escape(
        host_launch,
        kind=kind,
        in_container=in_container,
        host_pid=host_pid,
        cgroup_parent=cgroup_parent,
        uuid=uuid,
    )
    argv = shim_argv(rkt_argv, root, uuid, python=python, escape=escape)
    return Launch(kind=kind, argv=tuple(argv), escape=escape)
