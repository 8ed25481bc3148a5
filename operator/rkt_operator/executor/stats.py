"""CPU and memory of a running pod, and the processes a signal is meant for (psutil).

The pod's process is the one rkt reports as ``pid`` (``rkt status`` text; for the default
stage1 that is the ``rkt run-prepared`` process, which becomes systemd-nspawn). Its whole
tree is measured. Signals go to the app processes: the descendants of the pod process
without stage1's own machinery (the pod's systemd and journald, which must never get a
SIGTERM/SIGINT meant for an app: for systemd as PID 1 they mean re-exec and reboot).
Blocking psutil calls: run them in a thread.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

# Process names of rkt's stage1 inside a pod (coreos/host/src flavours).
STAGE1_NAMES = frozenset(
    {"systemd", "systemd-journald", "systemd-journal", "systemd-nspawn", "systemd-shutdown"}
)


@dataclass(frozen=True)
class PodStats:
    """One sample of a pod's process tree."""

    pid: int
    processes: int
    cpu_seconds: float  # user + system, of every process in the tree (children reaped excluded)
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
            cpu += times.user + times.system
            rss += mem.rss
            count += 1
    return PodStats(
        pid=pid, processes=count, cpu_seconds=cpu, rss_bytes=rss, sampled_at=datetime.now(UTC)
    )


def app_processes(pid: int) -> list[psutil.Process]:
    """The pod's app processes: descendants of the pod process minus stage1's own."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for proc in children:
        with contextlib.suppress(psutil.Error):
            if proc.name() not in STAGE1_NAMES and proc.status() != psutil.STATUS_ZOMBIE:
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
