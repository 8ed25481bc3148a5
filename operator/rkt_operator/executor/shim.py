"""The detached supervisor of one pod: ``python -m rkt_operator.executor.shim``.

Detached (the default): the launcher starts it in a new session with stdin from /dev/null;
it forks once so that the long-lived supervisor is not a child of the agent (the agent can
die, be SIGKILLed or restart: the pod and its supervisor keep running), and the short-lived
first process reports on stdout how the launch went:

- ``started <supervisor pid> <rkt pid>``: the supervisor claimed the pod and runs rkt;
- ``already-launched``: another supervisor already claimed this pod (nothing started);
- ``error <message>``: nothing started.

The supervisor claims the pod by creating the launch marker atomically (``link``), runs the
given ``rkt ... run-prepared ... <uuid>`` argv with output to the log files, forwards
SIGTERM/SIGINT to it, ignores SIGHUP, waits, and records the exit status atomically in the
exit file. While rkt runs, a timer thread rotates the two log files (``logrotate``) with the
limits of the ``--log-limits`` file, re-read when it changes. With ``--foreground`` it
supervises in its own process instead (the main process of a transient systemd unit;
``KillMode=mixed`` then signals it first, and it forwards). With ``--enter-namespaces-of``
the supervisor first leaves the agent's container (``hostns``): the host's mount, UTS,
IPC, network and cgroup namespaces, and a cgroup of its own (``--cgroup``, removed again
when rkt has exited); a failure there is reported as ``error ...`` and nothing is started.
Everything is imported before that: in the host's mount namespace the agent's files do not
exist (``hostns.forbid_imports``). Standard library, ``executor.files``, ``executor.hostns``
and ``executor.logrotate`` only: this must start fast and stay small.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from rkt_operator.executor import files, hostns, logrotate

_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rkt-operator-shim")
    parser.add_argument("--marker", type=Path, required=True)
    parser.add_argument("--exit-file", type=Path, required=True)
    parser.add_argument("--stdout", type=Path, required=True)
    parser.add_argument("--stderr", type=Path, required=True)
    parser.add_argument(
        "--log-limits", type=Path, default=None, help="JSON file of the rotation limits"
    )
    parser.add_argument(
        "--foreground",
        action="store_true",
        help="supervise in this process (as a systemd unit's main process): no fork, the "
        "launch report goes to stdout",
    )
    parser.add_argument(
        "--enter-namespaces-of",
        type=int,
        default=None,
        help="before claiming the pod, enter this process's namespaces (--namespaces) and "
        "move into --cgroup: out of the agent's container (see hostns)",
    )
    parser.add_argument("--namespaces", default="mnt,uts,ipc,net,cgroup")
    parser.add_argument("--cgroup", default=None, help="cgroup relative to each hierarchy root")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def _claim(marker: Path) -> bool:
    """Create the launch marker with our pid, atomically and only if nobody else did."""
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    files.write_atomic(tmp, files.marker_content(os.getpid()))
    try:
        os.link(tmp, marker)
    except FileExistsError:
        return False
    finally:
        files.remove_quietly(tmp)
    return True


def _open_log(path: Path) -> int:
    """The log file, opened for appending (never a pipe: see ``logrotate``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, _APPEND, 0o644)


class _Rotator(threading.Thread):
    """Checks the log files about once a second and rotates them when due."""

    def __init__(self, paths: Sequence[Path], limits_file: Path | None) -> None:
        super().__init__(name="log-rotation", daemon=True)
        self.paths = tuple(paths)
        self.limits_file = limits_file
        self.limits = logrotate.LogLimits()
        self.finished = threading.Event()
        self._seen: tuple[int, int] | None = None
        self._complaints: dict[Path, str] = {}

    def run(self) -> None:
        while not self.finished.wait(logrotate.CHECK_INTERVAL_SECONDS):
            self.check()

    def check(self) -> None:
        self._reload()
        for path in self.paths:
            try:
                logrotate.rotate(path, self.limits)
            except (OSError, ValueError) as exc:
                complaint = f"rkt-operator-shim: cannot rotate {path.name}: {exc}\n"
                if self._complaints.get(path) != complaint:  # once, not every second
                    self._complaints[path] = complaint
                    sys.stderr.write(complaint)
            else:
                self._complaints.pop(path, None)

    def _reload(self) -> None:
        if self.limits_file is None:
            return
        try:
            info = os.stat(self.limits_file)
        except OSError:
            return
        stamp = (info.st_ino, info.st_mtime_ns)
        if stamp == self._seen:
            return
        self._seen = stamp
        limits = files.read_log_limits(self.limits_file)
        if limits is None or limits == self.limits:
            return
        self.limits = limits
        for path in self.paths:
            with contextlib.suppress(OSError, ValueError):
                logrotate.prune(path, limits.max_files)


def _supervise(args: argparse.Namespace, argv: Sequence[str], report: int) -> int:
    """The long-lived child: claim, run rkt, record its exit."""

    def say(line: str) -> None:
        with contextlib.suppress(OSError):
            os.write(report, (line + "\n").encode())
            os.close(report)

    joined: list[tuple[Path, Path]] = []
    if args.enter_namespaces_of is not None:
        try:
            hostns.enter_namespaces(
                args.enter_namespaces_of, tuple(filter(None, args.namespaces.split(",")))
            )
            if args.cgroup:
                joined = hostns.join_cgroup(args.cgroup)
        except OSError as exc:
            hostns.leave_cgroup(joined)
            say(f"error cannot leave the agent's container: {exc.strerror or exc}")
            return 1
    if not _claim(args.marker):
        hostns.leave_cgroup(joined)
        say("already-launched")
        return 0
    try:
        out = _open_log(args.stdout)
        err = _open_log(args.stderr)
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    except OSError as exc:
        files.remove_quietly(args.marker)
        hostns.leave_cgroup(joined)
        say(f"error cannot run {argv[0]!r}: {exc.strerror}")
        return 1
    os.close(out)
    os.close(err)
    rotator = _Rotator((args.stdout, args.stderr), args.log_limits)
    rotator.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    say(f"started {os.getpid()} {child.pid}")
    returncode = child.wait()
    files.write_exit(args.exit_file, returncode)
    rotator.finished.set()
    rotator.join(timeout=60)
    rotator.check()  # what the pod wrote last stays within the limits too
    hostns.leave_cgroup(joined)  # the pod's cgroup goes with it (if nothing is left in it)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = list(args.argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        sys.stdout.write("error no command given\n")
        return 2
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if args.foreground:
        return _supervise(args, command, os.dup(sys.stdout.fileno()))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the supervisor
        os.close(read_end)
        os.setsid()
        # Nothing of the launcher's pipes may stay open in the long-lived process: its own
        # diagnostics (a traceback, if ever) go to the pod's stderr log.
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(devnull)
        try:
            log_fd = _open_log(args.stderr)
        except OSError:
            log_fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        code = 1
        try:
            code = _supervise(args, command, write_end)
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        line = pipe.readline().decode(errors="replace").strip()
    sys.stdout.write((line or "error supervisor exited before reporting") + "\n")
    sys.stdout.flush()
    return 0 if line.startswith(("started", "already-launched")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
