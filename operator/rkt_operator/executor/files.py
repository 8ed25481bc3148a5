"""The executor's few files next to a task's directories, and how to read them.

Per pod, in the task's root directory (``TaskDirs.root``):

- ``<uuid>.launch``: written exclusively by the supervisor (``shim``) before it runs
  ``rkt run-prepared``: its pid and process start time. Proves a launch is under way, so a
  restarted agent never launches the same prepared pod twice.
- ``<uuid>.exit``: the exit status of ``rkt run-prepared``, written atomically by the
  supervisor. A cache: ``rkt status`` (``apps[].exit_code``) wins when it knows.
- ``<uuid>.logs.json``: the log rotation limits of the pod (written at launch, rewritten by
  the agent when ``spec.logs`` changes; its supervisor re-reads it).
- ``<uuid>.stop``: written by the agent when it stops the pod: the signal it ended with
  (``SIGTERM`` for ``rkt stop``, ``SIGKILL`` once ``rkt stop --force`` was needed), so that
  the pod's end is reported as a stop, also after an agent restart. rkt itself reports an
  app stopped by ``rkt stop`` as exit code 0 (and none after a forced stop).

The rkt process's output (app output and rkt diagnostics) goes to
``alloc/logs/<uuid>.stdout.0`` / ``<uuid>.stderr.0`` of the task's directory, rotated as
``logrotate`` describes.

Per task, under ``<task_root>/.locks/<uid>.lock``: the start lock (``flock``), held while a
pod is being prepared and inherited by ``rkt prepare`` so that it outlives a killed agent.

Nothing here is the source of truth about pods; rkt is.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from rkt_operator.executor import logrotate

_MAX_RECORD_BYTES = 4096


def launch_marker(root: Path, uuid: str) -> Path:
    return root / f"{uuid}.launch"


def exit_file(root: Path, uuid: str) -> Path:
    return root / f"{uuid}.exit"


def logs_dir(root: Path) -> Path:
    """Where the task's pods write their output (``/alloc/logs`` inside the pod)."""
    return root / "alloc" / "logs"


def log_files(root: Path, uuid: str) -> tuple[Path, Path]:
    """The files the pod is writing its stdout and stderr to (the current ones)."""
    directory = logs_dir(root)
    return (
        logrotate.current_file(directory, uuid, "stdout"),
        logrotate.current_file(directory, uuid, "stderr"),
    )


def log_limits_file(root: Path, uuid: str) -> Path:
    return root / f"{uuid}.logs.json"


def lock_file(task_root: Path, uid: str) -> Path:
    return task_root / ".locks" / (re.sub(r"[^A-Za-z0-9-]", "_", uid)[:128] + ".lock")


def stop_file(root: Path, uuid: str) -> Path:
    return root / f"{uuid}.stop"


def start_marker(task_root: Path, uid: str) -> Path:
    """Present from just before a task's ``rkt prepare`` until its pod is launched: a start
    that a killed agent left unfinished (see ``Executor.ensure_started``)."""
    return lock_file(task_root, uid).with_suffix(".starting")


def pod_files(root: Path, uuid: str) -> list[Path]:
    """The supervisor files of one pod (logs excluded)."""
    return [
        launch_marker(root, uuid),
        exit_file(root, uuid),
        log_limits_file(root, uuid),
        stop_file(root, uuid),
    ]


@dataclass(frozen=True)
class ExitRecord:
    """How ``rkt run-prepared`` ended, as its supervisor saw it."""

    returncode: int  # as Python reports it: negative = killed by that signal
    finished_at: datetime

    @property
    def exit_code(self) -> int:
        """Shell convention: 128 + signal number for a process killed by a signal."""
        return self.returncode if self.returncode >= 0 else 128 - self.returncode


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write-to-temp, fsync, rename: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_exit(path: Path, returncode: int) -> None:
    record = {"returncode": returncode, "finished_at": datetime.now(UTC).isoformat()}
    write_atomic(path, json.dumps(record).encode())


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_RECORD_BYTES + 1)
    except OSError:
        return None
    if len(raw) > _MAX_RECORD_BYTES:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_exit(path: Path) -> ExitRecord | None:
    """The exit record, or None when absent or unreadable (a cache may be lost)."""
    data = _read_json(path)
    if data is None:
        return None
    rc = data.get("returncode")
    if not isinstance(rc, int) or isinstance(rc, bool):
        return None
    try:
        finished = datetime.fromisoformat(str(data.get("finished_at")))
    except ValueError:
        finished = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    if finished.tzinfo is None:
        finished = finished.replace(tzinfo=UTC)
    return ExitRecord(returncode=rc, finished_at=finished)


STOP_SIGNALS = ("SIGTERM", "SIGKILL")


def write_stop(path: Path, signal_name: str) -> None:
    """Record that the agent stopped the pod, and with which signal."""
    record = {"signal": signal_name, "at": datetime.now(UTC).isoformat()}
    write_atomic(path, json.dumps(record).encode())


def read_stop(path: Path) -> str | None:
    """The signal the agent stopped the pod with, or None (not stopped by the agent)."""
    data = _read_json(path)
    signal_name = data.get("signal") if data is not None else None
    return signal_name if isinstance(signal_name, str) and signal_name in STOP_SIGNALS else None


def write_log_limits(path: Path, limits: logrotate.LogLimits) -> None:
    write_atomic(path, limits.to_json())


def read_log_limits(path: Path) -> logrotate.LogLimits | None:
    """The pod's rotation limits, or None when absent or unreadable."""
    data = _read_json(path)
    return None if data is None else logrotate.LogLimits.from_mapping(data)


def marker_content(pid: int) -> bytes:
    return json.dumps({"pid": pid, "create_time": psutil.Process(pid).create_time()}).encode()


def marker_alive(path: Path) -> bool:
    """Is the supervisor that wrote this launch marker still running?"""
    data = _read_json(path)
    if data is None:
        return False
    pid, created = data.get("pid"), data.get("create_time")
    if not isinstance(pid, int) or not isinstance(created, int | float):
        return False
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - float(created)) < 0.01 and proc.status() not in (
            psutil.STATUS_ZOMBIE,
            psutil.STATUS_DEAD,
        )
    except psutil.Error:
        return False


def remove_quietly(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
