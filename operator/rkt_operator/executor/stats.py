"""CPU and memory of a running pod, and the processes a signal is meant for (psutil).

The pod's process is the one rkt reports as ``pid`` (``rkt status`` text; for the default
stage1 that is the ``rkt run-prepared`` process, which becomes systemd-nspawn). Its whole
tree is measured. Signals go to the app processes only, never to stage1's own machinery
(the pod's systemd must not get a SIGTERM/SIGINT meant for an app: for systemd as PID 1
they mean re-exec and reboot).
Blocking psutil calls: run them in a thread.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil


@dataclass(frozen=True)
class PodStats:
    """One sample of a pod's process tree."""

    pid: int
    processes: int
    # user + system of every process in the tree, plus what each has reaped from its own
    # children: a reaped child's time moves to its parent, so the sum does not drop then.
    cpu_seconds: float
    rss_bytes: int
    sampled_at: datetime


def pid_from_pod_dir(rkt_dir: Path, uuid: str) -> int | None:
    """rkt's own fallback: ``pid`` (kvm/fly) or ``ppid`` (nspawn) in ``pods/run/<uuid>``."""
    for name in ("pid", "ppid"):
        try:
            text = (rkt_dir / "pods" / "run" / uuid / name).read_text()[:32].strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def collect(pid: int) -> PodStats | None:
    """Sum CPU time and RSS over the pod process and its descendants; None if it is gone."""
    try:
        procs = _tree(pid)
    except psutil.Error:
        return None
    cpu, rss, count = 0.0, 0, 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            mem = proc.memory_info()
            cpu += times.user + times.system + times.children_user + times.children_system
            rss += mem.rss
            count += 1
    return PodStats(
        pid=pid, processes=count, cpu_seconds=cpu, rss_bytes=rss, sampled_at=datetime.now(UTC)
    )


def _root_id(proc: psutil.Process) -> tuple[int, int]:
    st = os.stat(f"/proc/{proc.pid}/root")
    return st.st_dev, st.st_ino


def app_processes(pid: int) -> list[psutil.Process]:
    """The pod's app processes: the descendants of the pod process that sit deepest in
    root-directory changes. Apps run chrooted into their image's rootfs below stage1's own
    root (nspawn -> systemd in the stage1 rootfs -> apps in /opt/stage2/<app>/rootfs; in
    rkt-sim: supervisor helpers -> apps in the pod's rootfs), so stage1's processes are never
    hit. Without any root change (rkt-sim unprivileged) every descendant counts."""
    try:
        top = psutil.Process(pid)
        depth: dict[psutil.Process, int] = {top: 0}
        roots = {top: _root_id(top)}
    except (psutil.Error, OSError):
        return []
    queue = [top]
    for proc in queue:  # breadth first: parents before children
        with contextlib.suppress(psutil.Error):
            for child in proc.children():
                try:
                    roots[child] = _root_id(child)
                except OSError:
                    continue
                depth[child] = depth[proc] + (roots[child] != roots[proc])
                queue.append(child)
    deepest = max(depth.values())
    out = []
    for proc, d in depth.items():
        if proc is top or d != deepest:
            continue
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
    return out


def send(procs: list[psutil.Process], signum: int) -> int:
    """Signal each process (psutil checks it is still the same process); returns how many."""
    sent = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signum)
            sent += 1
    return sent
